"""Patching across torchrun ranks: which tasks each rank runs (balanced by the prompt tokens
they run), and gathering what the ranks found."""

from __future__ import annotations

from typing import TypeVar

from taskvec.extraction.distributed import World
from taskvec.extraction.sharding import Group, deal
from taskvec.patching.checkpoint import Checkpoint
from taskvec.patching.prompts import PatchPrepared, TaskPrompts

T = TypeVar("T")


def task_cost(task: TaskPrompts, n_layers: int, dev_done: bool = False) -> int:
    """Prompt tokens a task runs: its vector prompts, dev zero-shot once plus once per swept
    layer, the few-shot baselines (none of these when its dev sweep is saved), and the test at
    up to three layers."""
    tokens = lambda prompts: sum(len(p) for p in prompts)  # noqa: E731
    dev = (
        tokens(task.vector_prompts) + (1 + n_layers) * tokens(task.dev.zero) + tokens(task.dev.few)
    )
    return (0 if dev_done else dev) + 3 * tokens(task.test.zero) + tokens(task.test.few)


def task_shares(prep: PatchPrepared, size: int, checkpoint: Checkpoint) -> list[list[int]]:
    """Each rank's tasks (indices into `prep.tasks`), balanced by `task_cost`."""
    costs = [
        task_cost(task, len(prep.layers), checkpoint.has_dev(task.name)) for task in prep.tasks
    ]
    return deal([Group((k,), cost) for k, cost in enumerate(costs)], size)[0]


def gather_tasks(world: World, mine: dict[int, T]) -> dict[int, T]:
    """Every rank's results by task index, on every rank."""
    return {k: v for part in world.gather(mine) for k, v in part.items()}
