"""The README's Start-here block, as written, in a clean shell in a fresh clone (the newcomer's
first minutes)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def _start_here() -> str:
    section = (REPO / "README.md").read_text().split("## Start here", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_start_here_runs_as_written_in_a_clean_shell(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    # the set-up itself is what scripts/install-torch.sh's tests cover
    (clone / ".venv").symlink_to(REPO / ".venv")
    (
        clone / ".venv" / ".installed"
    ).touch()  # newer than the clone's pyproject.toml: make reuses the environment
    env = {"HOME": str(tmp_path), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    result = subprocess.run(
        ["bash", "-e", "-c", _start_here()],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    session = re.search(r"^session: (\S+)$", result.stdout, re.M).group(1)  # type: ignore[union-attr]
    assert "next steps" in result.stdout
    listing = result.stdout.split("next steps", 1)[1]
    assert session in listing and "complete" in listing, "taskvec ls lists the finished session"
    assert (clone / "outputs" / "task_vector" / session / "task_vectors.pt").is_file()


def _next_steps(*commands: str) -> str:
    """The README's Next-steps lines starting with `commands`, continuations joined."""
    section = (REPO / "README.md").read_text().split("## Next steps", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    lines = block.replace("\\\n", " ").splitlines()
    picked = [line.split("  #")[0].strip() for line in lines if line.startswith(commands)]
    assert len(picked) == len(commands), picked
    return "\n".join(picked)


def test_next_steps_end_in_a_correlate_table_with_both_classes(tmp_path: Path) -> None:
    """The README's evaluate -> correlate step on the embedded model, as written, in a clone."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    (clone / ".venv").symlink_to(REPO / ".venv")
    script = "source .venv/bin/activate\n" + _next_steps("taskvec evaluate", "taskvec correlate")
    env = {"HOME": str(tmp_path), "PATH": "/usr/local/bin:/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "joined by sample_id: 64 matched" in result.stdout
    table = re.search(r"^table: (\S+)$", result.stdout, re.M).group(1)  # type: ignore[union-attr]
    import pandas as pd

    rows = pd.read_csv(clone / table)
    correct = int(rows.n_correct.iloc[0])
    assert 0 < correct < 64, "both classes present"
    assert rows.probe_acc.notna().all() and (rows.baseline_acc < 1).all()
