"""A patching run end to end: prepare (no weights), sweep the layers on dev, test, write
patching.json and patching.png."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import PreTrainedModel

from taskvec.errors import Interrupted, sigterm_as_interrupt
from taskvec.extraction.distributed import World, joined_world
from taskvec.model.batched import GreedyRunner
from taskvec.model.loading import load_model, resolve_device, resolve_dtype
from taskvec.patching.checkpoint import SUMMARY_FILE, Checkpoint
from taskvec.patching.prompts import PatchPrepared, prepare_patching
from taskvec.patching.ranks import gather_tasks, task_shares
from taskvec.patching.summary import summarise, task_summary
from taskvec.patching.sweep import best_layer, run_dev, run_test, task_scorer
from taskvec.schemas.patching import PatchSummary
from taskvec.session.atomic import save_json
from taskvec.versions import package_versions


@dataclass(frozen=True)
class PatchResult:
    """Where the results went and what `patching.json` says."""

    directory: Path
    summary: PatchSummary


def run_patching(
    prep: PatchPrepared, progress: bool = True, resume: Path | None = None
) -> PatchResult:
    """Load the model, sweep the layers on dev, test at the chosen layers, write patching.json and
    patching.png; each task's results are kept as it finishes, so `resume` (the results
    directory of an interrupted run) runs only the tasks left.

    Under torchrun the tasks are dealt to the ranks (`ranks.task_shares`), each saving its tasks
    into the one results directory; the ranks exchange their dev curves to choose the shared
    layer, and rank 0 writes patching.json (any world size resumes any other's run)."""
    with joined_world(resolve_device(prep.config.device)) as (world, device):
        return _run(prep, progress, resume, world, device)


def _run(
    prep: PatchPrepared, progress: bool, resume: Path | None, world: World, device: torch.device
) -> PatchResult:
    cfg = prep.config
    # checked before the weights
    reopened = world.on_main(lambda: Checkpoint.reopen(prep, resume)) if resume else None
    timings: dict[str, float] = {}
    start = time.perf_counter()
    model = load_model(prep.model_ref, resolve_dtype(cfg.dtype, device), device)
    runner = GreedyRunner(model, prep.tokenizer, cfg.batch_size, cfg.max_batch_tokens)
    timings["load_s"] = time.perf_counter() - start
    # after loading: a load error writes nothing
    checkpoint = reopened or world.on_main(lambda: Checkpoint.start(prep))
    mine = task_shares(prep, world.size, checkpoint)[world.rank]
    try:
        with sigterm_as_interrupt():
            summary = _sweep_and_test(
                prep, model, runner, checkpoint, progress and world.main, timings, world, mine
            )
    except KeyboardInterrupt:
        if world.main:
            checkpoint.record(prep, "interrupted")
        raise Interrupted(
            f"interrupted; {checkpoint.finished()} of {len(prep.tasks)} tasks' dev sweeps are "
            f"kept; resume with: taskvec patch --config {prep.config_path} --resume "
            f"{checkpoint.directory}"
        ) from None
    tasks = [prep.tasks[k].name for k in mine]
    per_rank = world.gather({"rank": world.rank, "tasks": tasks, **timings})
    summary["timings"] = {**timings, "per_rank": per_rank}
    summary["world_size"] = world.size
    written = _typed(prep, summary)
    if world.main:
        _write(written, checkpoint.directory)
        checkpoint.record(prep, "complete")
    world.barrier()  # every rank returns once the results are written
    return PatchResult(checkpoint.directory, written)


def _sweep_and_test(
    prep: PatchPrepared,
    model: PreTrainedModel,
    runner: GreedyRunner,
    checkpoint: Checkpoint,
    progress: bool,
    timings: dict[str, float],
    world: World,
    mine: list[int],
) -> dict[str, Any]:
    """The dev sweep of this rank's tasks (`mine`), then (with every rank's dev curves) the test
    at the shared layer; finished tasks are read back."""
    layers, n = prep.layers, len(prep.tasks)
    start = time.perf_counter()
    runs = {}
    for k in tqdm(mine, desc="dev sweep", disable=not progress, leave=False):
        task = prep.tasks[k]
        run = checkpoint.load_dev(task, task_scorer(prep, task), layers)
        if run is None:
            run = run_dev(model, runner, prep, task)
            checkpoint.save_dev(run)
        runs[k] = run
    timings["dev_s"] = time.perf_counter() - start
    dev = gather_tasks(world, {k: (r.curve, r.dev.accuracy(0)) for k, r in runs.items()})
    # summed in task order, as one process sums them
    dev_curve = {layer: sum(dev[k][0][layer] for k in range(n)) / n for layer in layers}
    shared = best_layer(dev_curve, sum(dev[k][1] for k in range(n)) / n)
    start = time.perf_counter()
    per_task = {}
    for k, r in tqdm(runs.items(), desc="test", disable=not progress, leave=False):
        test = checkpoint.load_test(r.task.name)
        if test is None:
            test = run_test(runner, r, shared, prep.config)
            checkpoint.save_test(r.task.name, test)
        per_task[k] = task_summary(r, layers, test)
    timings["test_s"] = time.perf_counter() - start
    everything = gather_tasks(world, per_task)
    return summarise(prep, [everything[k] for k in range(n)], dev_curve, shared)


def _typed(prep: PatchPrepared, summary: dict[str, Any]) -> PatchSummary:
    """patching.json's content: the run's summary with the config and package versions."""
    return PatchSummary.model_validate(
        {
            **summary,
            "config": prep.config.model_dump(mode="json"),
            "config_path": str(prep.config_path),
            "versions": package_versions(),
        }
    )


def _write(written: PatchSummary, directory: Path) -> None:
    from taskvec.patching.plot import plot_patching  # matplotlib only when writing

    save_json(directory / SUMMARY_FILE, written.dump())
    plot_patching(written, directory / "patching.png")


def patch(
    config_path: Path | str, progress: bool = True, resume: Path | str | None = None
) -> PatchResult:
    """Run a patch config end to end (see `taskvec.patching`); returns where the results went.

    `resume`: the results directory of an interrupted run of the same config."""
    return run_patching(
        prepare_patching(Path(config_path)), progress, Path(resume) if resume else None
    )
