"""The README's and the docs' Python snippets run as written against a session made here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from taskvec.cli import main
from tests.conftest import REPO, write_configs
from tests.tiny import save_tiny


def _snippet(page: str, heading: str) -> str:
    """The first python block under `heading` in `page` (relative to the repository)."""
    section = (REPO / page).read_text().split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("page", "heading"),
    [
        ("README.md", "## Loading a session"),
        ("docs/analysis.md", "# Studying sessions"),
        ("docs/architecture.md", "## Python API"),
    ],
)
def test_readme_snippets(
    page: str, heading: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = save_tiny(tmp_path / "tiny-16", "qwen2", n_layers=16)
    config = write_configs(
        tmp_path, str(model), layers=[3, 15], token_positions=["last", -2], max_samples=5
    )
    assert main(["extract", "--config", str(config), "--quiet"]) == 0
    session = next((tmp_path / "out" / "task_vector").iterdir()).name
    code = _snippet(page, heading)
    code = re.sub(r'^output_dir = ".*"$', f'output_dir = "{tmp_path / "out"}"', code, flags=re.M)
    code, n = re.subn(r'^session = ".*?"(.*)$', f'session = "{session}"', code, flags=re.M)
    assert n == 1, "the snippet must assign `session`"
    monkeypatch.chdir(tmp_path)
    exec(compile(code, page, "exec"), {})


def test_docs_links_resolve() -> None:
    """Every relative link of the README and docs/ points at a file that exists."""
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
