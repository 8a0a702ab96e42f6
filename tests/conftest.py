"""Shared fixtures: a tiny local model directory and configs that point at it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.tiny import save_tiny

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("models") / "tiny-qwen2", "qwen2", n_layers=4)


def write_configs(
    tmp: Path, model: str, prompt: str = "cot_5shot_answer.yaml", **overrides: object
) -> Path:
    """A prompt config copied from the shipped set (model replaced) and an extraction config."""
    prompt_cfg = yaml.safe_load((REPO / "configs" / "smollm2-135m" / prompt).read_text())
    prompt_cfg["model"] = model
    prompt_cfg["dataset"]["n_train"] = 40
    (tmp / "prompt.yaml").write_text(yaml.safe_dump(prompt_cfg))
    cfg: dict[str, object] = {
        "prompt_config": str(tmp / "prompt.yaml"),
        "layers": [0, 2, -1],
        "token_positions": ["last", -2, "first"],
        "split": "train",
        "max_samples": 12,
        "output_dir": str(tmp / "out"),
        "batch_size": 4,
        "max_batch_tokens": 600,
    }
    cfg.update(overrides)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    path = tmp / "extract.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
