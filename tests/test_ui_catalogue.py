"""The web UI's Korean catalogue covers every message of the templates and the UI's Python code."""

from __future__ import annotations

from pathlib import Path

from babel.messages import extract, pofile

UI = Path(__file__).parent.parent / "tracehub" / "ui"
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]


def source_messages() -> set[str]:
    found = set()
    for _file, _line, message, _comments, _context in extract.extract_from_dir(UI, METHODS):
        for text in message if isinstance(message, tuple) else (message,):
            if text:
                found.add(text)
    return found


def test_every_message_has_a_korean_translation() -> None:
    with (UI / "locale" / "ko" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalogue = {m.id if isinstance(m.id, str) else m.id[0]: m for m in pofile.read_po(f, locale="ko") if m.id}
    wanted = source_messages()
    assert "Traces" in wanted and "Unknown or revoked API key." in wanted  # extraction reaches both kinds
    untranslated = sorted(m for m in wanted if m not in catalogue or not catalogue[m].string)
    assert not untranslated, f"messages without Korean (tracehub/ui/locale/README.md): {untranslated}"
    fuzzy = sorted(m for m in wanted if m in catalogue and catalogue[m].fuzzy)
    assert not fuzzy, f"unchecked (fuzzy) translations: {fuzzy}"
    stale = sorted(set(catalogue) - wanted)
    assert not stale, f"translations of messages no longer used: {stale}"
