"""A patching run end to end: prepare (no weights), sweep the layers on dev, test, write
patching.json and patching.png."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from taskvec.model.batched import GreedyRunner
from taskvec.model.loading import load_model, resolve_device, resolve_dtype
from taskvec.patching.prompts import PatchPrepared, prepare_patching
from taskvec.patching.summary import summarise, task_summary
from taskvec.patching.sweep import best_layer, run_dev, run_test
from taskvec.session.store import create_unique_dir, save_json
from taskvec.versions import package_versions


@dataclass(frozen=True)
class PatchResult:
    """Where the results went and what `patching.json` says."""

    directory: Path
    summary: dict[str, Any]


def run_patching(prep: PatchPrepared, progress: bool = True) -> PatchResult:
    """Load the model, sweep the layers on dev, test at the chosen layers, write patching.json
    and patching.png."""
    cfg, layers = prep.config, prep.layers
    timings: dict[str, float] = {}
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    model = load_model(prep.model_ref, resolve_dtype(cfg.dtype, device), device)
    runner = GreedyRunner(model, prep.tokenizer, cfg.batch_size, cfg.max_batch_tokens)
    timings["load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    runs = [
        run_dev(model, runner, prep, task)
        for task in tqdm(prep.tasks, desc="dev sweep", disable=not progress, leave=False)
    ]
    timings["dev_s"] = time.perf_counter() - start
    dev_curve = {layer: sum(r.curve[layer] for r in runs) / len(runs) for layer in layers}
    shared = best_layer(dev_curve, sum(r.dev.accuracy(0) for r in runs) / len(runs))
    start = time.perf_counter()
    per_task = [
        task_summary(r, layers, run_test(runner, r, shared, cfg))
        for r in tqdm(runs, desc="test", disable=not progress, leave=False)
    ]
    timings["test_s"] = time.perf_counter() - start
    summary = summarise(prep, per_task, dev_curve, shared)
    summary["timings"] = timings
    return PatchResult(_write(prep, summary), summary)


def _write(prep: PatchPrepared, summary: dict[str, Any]) -> Path:
    from taskvec.patching.plot import plot_patching  # matplotlib only when writing

    cfg = prep.config
    name = f"{cfg.tag or 'patching'}_{prep.model_ref.short_name}_{datetime.now().strftime('%Y%m%d_%H%M%S')}"
    directory = create_unique_dir(cfg.output_dir, name)
    summary = {
        **summary,
        "config": cfg.model_dump(mode="json"),
        "config_path": str(prep.config_path),
        "versions": package_versions(),
    }
    save_json(directory / "patching.json", summary)
    plot_patching(summary, directory / "patching.png")
    return directory


def patch(config_path: Path | str, progress: bool = True) -> PatchResult:
    """Run a patch config end to end (see `taskvec.patching`); returns where the results went."""
    return run_patching(prepare_patching(Path(config_path)), progress=progress)
