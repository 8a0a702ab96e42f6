"""Two small sessions (cot 5-shot and vanilla 0-shot) on the tiny model, and helpers to reshape them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from taskvec.cli import main
from tests.conftest import write_configs

PROMPTS = ("cot_5shot_answer.yaml", "vanilla_0shot_answer.yaml")


def extract_sessions(root: Path, model_dir: Path, max_samples: int = 12) -> tuple[Path, list[str]]:
    """Run the real pipeline once per prompt config into `root/out`; returns the output dir and
    session names."""
    names = []
    for prompt in PROMPTS:
        work = root / prompt.removesuffix(".yaml")
        work.mkdir()
        config = write_configs(
            work,
            str(model_dir),
            prompt=prompt,
            output_dir=str(root / "out"),
            max_samples=max_samples,
        )
        assert main(["extract", "--config", str(config), "--quiet"]) == 0
        names.append(
            next(
                p.name
                for p in (root / "out" / "task_vector").iterdir()
                if p.name.startswith(prompt.split("_answer")[0])
            )
        )
    return root / "out", names


def sample_records(raw_dir: Path) -> list[dict]:
    """Every sample_*.pt of a session, in sample_idx order."""
    return [torch.load(f, weights_only=True) for f in sorted(raw_dir.glob("sample_*.pt"))]


def copy_session(output_dir: Path, name: str, dest: Path) -> Path:
    """Copy a session's two directories under `dest` (without vectors.safetensors); returns the
    new output dir."""
    for sub in ("task_vector", "raw_representations"):
        shutil.copytree(
            output_dir / sub / name,
            dest / sub / name,
            ignore=shutil.ignore_patterns("vectors.safetensors"),
        )
    return dest


def write_consolidated(raw_dir: Path, order: list[int] | None = None) -> None:
    """vectors.safetensors as the pipeline writes it ({key: (n, hidden)}, `_sample_idx`), rows in
    `order` if given."""
    records = sample_records(raw_dir)
    if order is not None:
        records = [records[i] for i in order]
    keys = [k for k in records[0] if not k.startswith("_")]
    tensors = {k: torch.stack([r[k] for r in records]).contiguous() for k in keys}
    tensors["_sample_idx"] = torch.tensor([r["_sample_idx"] for r in records], dtype=torch.int64)
    save_file(tensors, raw_dir / "vectors.safetensors")


def edit_metadata(task_vector_dir: Path, **changes: object) -> None:
    path = task_vector_dir / "metadata.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
