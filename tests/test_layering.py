"""The import rules between tracehub's layers, read from the source with `ast`.

Imports point down the pipeline: the store knows no collector, decision engine, API or UI; the
collector knows no decision engine, API or UI; neither imports the composition root (`tracehub.hub`)
or the entry points, which wire them. Shared leaves (`records`, `threads`) import nothing of
tracehub. The API takes the OTLP receivers only to mount them, and the helpers it shares with them
from `tracehub.requests`. Imports under TYPE_CHECKING and inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "tracehub"

ABOVE = ("tracehub.api", "tracehub.ui", "tracehub.hub", "tracehub.server", "tracehub.cli", "tracehub.seed")
# Module or package: what it must never import (a name covers its submodules).
NEVER = {
    "tracehub.store": ("tracehub.collector", "tracehub.decision", *ABOVE),
    "tracehub.collector": ("tracehub.decision", *ABOVE),
    "tracehub.records": ("tracehub",),
    "tracehub.threads": ("tracehub",),
    "tracehub.requests": ("tracehub.decision", *ABOVE),
}
RECEIVERS = ("tracehub.collector.http", "tracehub.collector.grpc")
# The API modules that mount the OTLP/HTTP receiver: the app factory, and its middleware, which
# answers a refused OTLP request the way the receiver does.
MOUNTS_RECEIVERS = {"tracehub.api.app", "tracehub.api.middleware"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The tracehub modules `path` imports; for `from a import b` both `a` and `a.b` (b may be a
    module or a name in `a`: either way `a` is imported)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "tracehub" or name.startswith("tracehub.")}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


MODULES = {_module_name(path): _imports(path) for path in sorted(ROOT.rglob("*.py"))}


def test_the_walk_sees_imports() -> None:
    assert "tracehub.store.writer" in MODULES["tracehub.collector.pipeline"]
    assert "tracehub.hub" in MODULES["tracehub.server"]


@pytest.mark.parametrize("layer", sorted(NEVER))
def test_a_layer_never_imports_what_is_above_it(layer: str) -> None:
    wrong = sorted(f"{module} imports {name}" for module, names in MODULES.items() if _within(module, layer)
                   for name in names if not _within(name, layer)
                   and any(_within(name, banned) for banned in NEVER[layer]))
    assert not wrong


def test_the_api_takes_the_otlp_receivers_only_to_mount_them() -> None:
    wrong = sorted(f"{module} imports {name}" for module, names in MODULES.items()
                   if _within(module, "tracehub.api") and module not in MOUNTS_RECEIVERS
                   for name in names if any(_within(name, r) for r in RECEIVERS))
    assert not wrong
