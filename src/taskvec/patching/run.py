"""A patching run end to end: prepare (no weights), sweep the layers on dev, test, write
patching.json and patching.png."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm import tqdm

from taskvec.extraction.distributed import World, join_world, leave_world
from taskvec.extraction.sharding import Group, deal
from taskvec.model.batched import GreedyRunner
from taskvec.model.loading import load_model, resolve_device, resolve_dtype
from taskvec.patching.prompts import PatchPrepared, TaskPrompts, prepare_patching
from taskvec.patching.summary import summarise, task_summary
from taskvec.patching.sweep import best_layer, run_dev, run_test
from taskvec.session.store import create_unique_dir, save_json
from taskvec.versions import package_versions

T = TypeVar("T")


@dataclass(frozen=True)
class PatchResult:
    """Where the results went and what `patching.json` says."""

    directory: Path
    summary: dict[str, Any]


def run_patching(prep: PatchPrepared, progress: bool = True) -> PatchResult:
    """Load the model, sweep the layers on dev, test at the chosen layers, write patching.json
    and patching.png.

    Under torchrun the tasks are dealt to the ranks (`task_shares`); the ranks exchange their
    dev curves to choose the shared layer, rank 0 writes the results, every rank returns them.
    """
    world, device = join_world(resolve_device(prep.config.device))
    try:
        return _run(prep, progress, world, device)
    finally:
        leave_world(world)


def task_cost(task: TaskPrompts, n_layers: int) -> int:
    """Prompt tokens a task runs: its vector prompts, dev zero-shot once plus once per swept
    layer, the few-shot baselines, test at up to three layers."""
    tokens = lambda prompts: sum(len(p) for p in prompts)  # noqa: E731
    return (
        tokens(task.vector_prompts)
        + (1 + n_layers) * tokens(task.dev.zero)
        + tokens(task.dev.few)
        + 3 * tokens(task.test.zero)
        + tokens(task.test.few)
    )


def task_shares(prep: PatchPrepared, size: int) -> list[list[int]]:
    """Each rank's tasks (indices into `prep.tasks`), balanced by `task_cost`."""
    costs = [task_cost(task, len(prep.layers)) for task in prep.tasks]
    return deal([Group((k,), cost) for k, cost in enumerate(costs)], size)[0]


def _run(prep: PatchPrepared, progress: bool, world: World, device: torch.device) -> PatchResult:
    cfg, layers = prep.config, prep.layers
    timings: dict[str, float] = {}
    start = time.perf_counter()
    model = load_model(prep.model_ref, resolve_dtype(cfg.dtype, device), device)
    runner = GreedyRunner(model, prep.tokenizer, cfg.batch_size, cfg.max_batch_tokens)
    timings["load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    mine = task_shares(prep, world.size)[world.rank]
    bar = not progress or not world.main
    runs = {
        k: run_dev(model, runner, prep, prep.tasks[k])
        for k in tqdm(mine, desc="dev sweep", disable=bar, leave=False)
    }
    timings["dev_s"] = time.perf_counter() - start
    dev = _merged(world.gather({k: (r.curve, r.dev.accuracy(0)) for k, r in runs.items()}))
    n = len(prep.tasks)
    # summed in task order, as one process sums them
    dev_curve = {layer: sum(dev[k][0][layer] for k in range(n)) / n for layer in layers}
    shared = best_layer(dev_curve, sum(dev[k][1] for k in range(n)) / n)
    start = time.perf_counter()
    tested = {
        k: task_summary(r, layers, run_test(runner, r, shared, cfg))
        for k, r in tqdm(runs.items(), desc="test", disable=bar, leave=False)
    }
    timings["test_s"] = time.perf_counter() - start
    everything = _merged(world.gather(tested))
    summary = summarise(prep, [everything[k] for k in range(n)], dev_curve, shared)
    summary["timings"] = timings
    summary["world_size"] = world.size
    summary["ranks"] = world.gather({"rank": world.rank, "tasks": mine, **timings})
    directory = world.on_main(lambda: _write(prep, summary))
    return PatchResult(directory, summary)


def _merged(parts: list[dict[int, T]]) -> dict[int, T]:
    return {k: v for part in parts for k, v in part.items()}


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
