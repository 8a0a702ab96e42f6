"""A patching run end to end: prepare (no weights), sweep the layers on dev, test, write
patching.json and patching.png."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm
from transformers import PreTrainedModel

from taskvec.errors import Interrupted, sigterm_as_interrupt
from taskvec.model.batched import GreedyRunner
from taskvec.model.loading import load_model, resolve_device, resolve_dtype
from taskvec.patching.checkpoint import SUMMARY_FILE, Checkpoint
from taskvec.patching.prompts import PatchPrepared, prepare_patching
from taskvec.patching.summary import summarise, task_summary
from taskvec.patching.sweep import best_layer, run_dev, run_test, task_scorer
from taskvec.session.store import save_json
from taskvec.versions import package_versions


@dataclass(frozen=True)
class PatchResult:
    """Where the results went and what `patching.json` says."""

    directory: Path
    summary: dict[str, Any]


def run_patching(
    prep: PatchPrepared, progress: bool = True, resume: Path | None = None
) -> PatchResult:
    """Load the model, sweep the layers on dev, test at the chosen layers, write patching.json and
    patching.png; each task's results are kept as it finishes, so `resume` (the results
    directory of an interrupted run) runs only the tasks left."""
    cfg = prep.config
    reopened = Checkpoint.reopen(prep, resume) if resume else None  # checked before the weights
    timings: dict[str, float] = {}
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    model = load_model(prep.model_ref, resolve_dtype(cfg.dtype, device), device)
    runner = GreedyRunner(model, prep.tokenizer, cfg.batch_size, cfg.max_batch_tokens)
    timings["load_s"] = time.perf_counter() - start
    checkpoint = reopened or Checkpoint.start(prep)  # after loading: a load error writes nothing
    try:
        with sigterm_as_interrupt():
            summary = _sweep_and_test(prep, model, runner, checkpoint, progress, timings)
    except KeyboardInterrupt:
        checkpoint.record(prep, "interrupted")
        raise Interrupted(
            f"interrupted; {checkpoint.finished()} of {len(prep.tasks)} tasks' dev sweeps are "
            f"kept; resume with: taskvec patch --config {prep.config_path} --resume "
            f"{checkpoint.directory}"
        ) from None
    summary["timings"] = timings
    _write(prep, summary, checkpoint.directory)
    checkpoint.record(prep, "complete")
    return PatchResult(checkpoint.directory, summary)


def _sweep_and_test(
    prep: PatchPrepared,
    model: PreTrainedModel,
    runner: GreedyRunner,
    checkpoint: Checkpoint,
    progress: bool,
    timings: dict[str, float],
) -> dict[str, Any]:
    """The dev sweep of every task, then the test at the shared layer; finished tasks are
    read back."""
    layers = prep.layers
    start = time.perf_counter()
    runs = []
    for task in tqdm(prep.tasks, desc="dev sweep", disable=not progress, leave=False):
        run = checkpoint.load_dev(task, task_scorer(prep, task), layers)
        if run is None:
            run = run_dev(model, runner, prep, task)
            checkpoint.save_dev(run)
        runs.append(run)
    timings["dev_s"] = time.perf_counter() - start
    dev_curve = {layer: sum(r.curve[layer] for r in runs) / len(runs) for layer in layers}
    shared = best_layer(dev_curve, sum(r.dev.accuracy(0) for r in runs) / len(runs))
    start = time.perf_counter()
    per_task = []
    for r in tqdm(runs, desc="test", disable=not progress, leave=False):
        test = checkpoint.load_test(r.task.name)
        if test is None:
            test = run_test(runner, r, shared, prep.config)
            checkpoint.save_test(r.task.name, test)
        per_task.append(task_summary(r, layers, test))
    timings["test_s"] = time.perf_counter() - start
    return summarise(prep, per_task, dev_curve, shared)


def _write(prep: PatchPrepared, summary: dict[str, Any], directory: Path) -> None:
    from taskvec.patching.plot import plot_patching  # matplotlib only when writing

    summary = {
        **summary,
        "config": prep.config.model_dump(mode="json"),
        "config_path": str(prep.config_path),
        "versions": package_versions(),
    }
    save_json(directory / SUMMARY_FILE, summary)
    plot_patching(summary, directory / "patching.png")


def patch(
    config_path: Path | str, progress: bool = True, resume: Path | str | None = None
) -> PatchResult:
    """Run a patch config end to end (see `taskvec.patching`); returns where the results went.

    `resume`: the results directory of an interrupted run of the same config."""
    return run_patching(
        prepare_patching(Path(config_path)), progress, Path(resume) if resume else None
    )
