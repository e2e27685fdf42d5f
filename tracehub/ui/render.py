"""Templates, message catalogues and static assets of the web UI.

One Jinja2 environment per language (English, Korean), each with its catalogue installed through
Jinja2's i18n extension; the catalogues are the `.po` files under `locale/`, read with Babel at
start (no compiled `.mo` in the tree). Autoescape is on for every template: LLM text, attribute
keys and values and policy text reach the pages only escaped.

Static files are served under a name that carries their content hash (`app.3f2a9c1d0b7e.css`),
cached for a year: a new release changes the names, never a cached file's meaning.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from babel import Locale, numbers
from babel.messages import mofile, pofile
from babel.support import Translations
from starlette.datastructures import QueryParams

HERE = Path(__file__).parent
STATIC = HERE / "static"
LOCALES = ("en", "ko")
DEFAULT_LOCALE = "en"
LANG_COOKIE = "tracehub_lang"


@dataclass(frozen=True)
class Asset:
    path: Path
    media_type: str


MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}


def _hashed_assets() -> tuple[dict[str, str], dict[str, Asset]]:
    """(logical name -> URL, hashed file name -> asset)."""
    urls: dict[str, str] = {}
    files: dict[str, Asset] = {}
    for path in sorted(STATIC.rglob("*")):
        if not path.is_file() or path.suffix not in MEDIA_TYPES:
            continue
        name = path.relative_to(STATIC).as_posix()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        stem, dot, suffix = name.rpartition(".")
        hashed = f"{stem}.{digest}.{suffix}"
        urls[name] = f"/static/{hashed}"
        files[hashed] = Asset(path, MEDIA_TYPES[path.suffix])
    return urls, files


def _translations(lang: str) -> Translations:
    po = HERE / "locale" / lang / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return Translations()
    with po.open("rb") as f:
        catalog = pofile.read_po(f, locale=lang)
    buffer = io.BytesIO()
    mofile.write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The page language: the header's switch (a cookie), else the browser's preference."""
    if cookie in LOCALES:
        return cookie
    wanted = []
    for part in (accept_language or "").split(","):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        if tag and math.isfinite(weight):
            wanted.append((weight, tag.replace("-", "_")))
    preferred = [tag for _, tag in sorted(wanted, key=lambda w: -w[0])]
    found = Locale.negotiate(preferred, LOCALES)
    return str(found) if found else DEFAULT_LOCALE


def N_(message: str) -> str:
    """Marks a message of Python code for the catalogue; `Ui.gettext` translates it per request."""
    return message


# Formatting for templates ----------------------------------------------------------------------

def _iso(ns: int | None) -> str:
    if ns is None:
        return ""
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _duration(ms: float | None) -> str:
    """A duration as people read it: 820 ms, 3.4 s, 2 min 5 s."""
    if ms is None:
        return "–"
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s" if ms < 10_000 else f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(ms / 1000, 60)
    if minutes < 60:
        return f"{minutes:.0f} min {seconds:.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours:.0f} h {minutes:.0f} min"


def _cost(usd: float | None) -> str:
    if not usd:
        return "$0"
    return f"${usd:.4f}" if usd < 1 else f"${usd:,.2f}"


def url_with(params: QueryParams | dict[str, Any], path: str = "", **changes: Any) -> str:
    """`path` with the current query string changed: a value of None or "" drops the parameter.
    Changing any filter returns to the first page."""
    items = dict(params.items())
    if "page" not in changes:
        items.pop("page", None)
    for name, value in changes.items():
        if value is None or value == "":
            items.pop(name, None)
        else:
            items[name] = str(value)
    query = urlencode(items)
    return f"{path}?{query}" if query else (path or "?")


class Templates:
    """The template environments and the static assets, loaded once per process."""

    def __init__(self) -> None:
        self.asset_urls, self.assets = _hashed_assets()
        loader = jinja2.FileSystemLoader(HERE / "templates")
        self.envs: dict[str, jinja2.Environment] = {}
        self.translations = {lang: _translations(lang) for lang in LOCALES}
        for lang in LOCALES:
            env = jinja2.Environment(loader=loader, autoescape=True, extensions=["jinja2.ext.i18n"],
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
            env.install_gettext_translations(self.translations[lang], newstyle=True)  # type: ignore[attr-defined]
            env.globals.update(asset=self.asset, url_with=url_with, lang=lang, locales=LOCALES)
            env.filters.update(
                iso=_iso, duration=_duration, cost=_cost,
                num=lambda value, lang=lang: "–" if value is None else numbers.format_decimal(value, locale=lang),
                pct=lambda value, lang=lang: "–" if value is None else numbers.format_percent(
                    value, "#,##0.#%", locale=lang),
            )
            self.envs[lang] = env

    def asset(self, name: str) -> str:
        return self.asset_urls[name]

    def render(self, lang: str, template: str, context: dict[str, Any]) -> str:
        return self.envs[lang].get_template(template).render(context)

    def gettext(self, lang: str, message: str) -> str:
        return self.translations[lang].gettext(message)
