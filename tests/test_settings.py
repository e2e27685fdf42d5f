"""Settings from the environment: boolean values are parsed strictly, and a bad one stops the start."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracehub.settings import Settings, parse_bool

BOOLEANS = [f.name for f in dataclasses.fields(Settings) if f.type in ("bool", bool)]
ACCEPTED = "use true/false, 1/0, yes/no or on/off (any case)"


@pytest.mark.parametrize("raw, value", [
    ("true", True), ("TRUE", True), ("True", True), ("1", True), ("yes", True), ("Yes", True), ("on", True),
    ("ON", True), (" true\n", True),
    ("false", False), ("FALSE", False), ("False", False), ("0", False), ("no", False), ("NO", False),
    ("off", False), ("Off", False), ("\tfalse ", False),
])
def test_the_boolean_words_are_accepted_in_any_case(raw: str, value: bool) -> None:
    assert parse_bool(raw, "TRACEHUB_X") is value


@pytest.mark.parametrize("raw", ["flase", "ture", "", " ", "2", "-1", "y", "n", "enabled", "disable", "t",
                                 "f", "0.0", "none", "null", "true false"])
def test_anything_else_is_refused_naming_the_variable_and_the_accepted_values(raw: str) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_bool(raw, "TRACEHUB_X")
    assert str(raised.value) == f"TRACEHUB_X={raw!r} is not a boolean: {ACCEPTED}"


def test_every_boolean_setting_is_parsed_strictly() -> None:
    assert set(BOOLEANS) >= {"otlp_c_reader", "allow_default_key_on_public", "decisions"}
    for name in BOOLEANS:
        variable = "TRACEHUB_" + name.upper()
        assert getattr(Settings.from_env({variable: "Off"}), name) is False
        assert getattr(Settings.from_env({variable: "YES"}), name) is True
        with pytest.raises(SystemExit, match=f"^{variable}='flase' is not a boolean"):
            Settings.from_env({variable: "flase"})


def test_a_server_with_a_misspelt_boolean_does_not_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEHUB_")}
    env.update(TRACEHUB_DATABASE_URL=f"sqlite:///{tmp_path / 'hub.db'}", TRACEHUB_DECISIONS="flase")
    r = subprocess.run([sys.executable, "-m", "tracehub", "serve", "--port", "0", "--otlp-grpc-port", "0",
                        "--otlp-http-port", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == f"TRACEHUB_DECISIONS='flase' is not a boolean: {ACCEPTED}"
    assert not (tmp_path / "hub.db").exists()  # refused before anything was opened
