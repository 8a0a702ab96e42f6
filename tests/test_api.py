"""The public API: `import taskvec` stays light, and every name in `__all__` resolves to its object."""

from __future__ import annotations

import subprocess
import sys

import taskvec


def test_import_taskvec_imports_no_torch() -> None:
    code = (
        "import sys, taskvec; "
        "print('torch' in sys.modules, sorted(taskvec.__all__) == sorted(set(taskvec.__all__)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.split() == ["False", "True"], result.stdout + result.stderr


def test_every_public_name_resolves() -> None:
    for name in taskvec.__all__:
        obj = getattr(taskvec, name)
        assert name == "__version__" or getattr(obj, "__name__", None) == name, name


def test_public_names_do_not_shadow_subpackages() -> None:
    """A name that is also a subpackage would turn into the module once that subpackage is imported."""
    import pkgutil

    subpackages = {m.name for m in pkgutil.iter_modules(taskvec.__path__)}
    assert not subpackages & set(taskvec.__all__)


LAYERS = [
    "errors validation positions versions settings",
    "data",
    "prompts",
    "config",
    "schemas",
    "model",
    "session",
    "analysis",
    "extraction",
    "evaluation patching steering",
    "report",
    "cli cli_study __main__ __init__",
]


def test_imports_go_one_way() -> None:
    """A module imports from its own layer and the layers before it, never from a later one
    (docs/architecture.md)."""
    import ast
    from pathlib import Path

    rank = {unit: i for i, line in enumerate(LAYERS) for unit in line.split()}
    src = Path(taskvec.__file__).parent
    upward = []
    for path in src.rglob("*.py"):
        rel = path.relative_to(src)
        here = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("taskvec.")
            ):
                there = node.module.split(".")[1]
                if rank[there] > rank[here]:
                    upward.append(f"{rel} imports {node.module}")
    assert not upward, upward
