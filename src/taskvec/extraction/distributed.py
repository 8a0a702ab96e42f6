"""Data parallelism on torch.distributed: the process group torchrun sets up, the shard of each rank,
and the few collectives a run needs (session name, finished samples, counts)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from taskvec.errors import TaskvecError

T = TypeVar("T")


class RankStopped(KeyboardInterrupt):
    """Another rank stopped (its process ended, so a collective failed): this rank's run is
    interrupted as if by Ctrl-C, records its status and can be resumed with any world size."""


@contextmanager
def _collective() -> Iterator[None]:
    try:
        yield
    except RuntimeError as exc:  # gloo: "Connection closed by peer"; NCCL: a DistBackendError
        raise RankStopped(f"another rank stopped ({str(exc).splitlines()[0][:200]})") from exc


@dataclass(frozen=True)
class World:
    """This process's place among the ranks; a plain (non-torchrun) run is a world of one."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast(self, value: T) -> T:
        """Rank 0's `value` on every rank."""
        if self.size == 1:
            return value
        box = [value]
        with _collective():
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        if self.size == 1:
            return [value]
        out: list[Any] = [None] * self.size
        with _collective():
            dist.all_gather_object(out, value)
        return out

    def on_main(self, work: Callable[[], T]) -> T:
        """Run `work` on rank 0 only and hand its result, or its TaskvecError, to every rank."""
        result, error = None, None
        if self.main:
            try:
                result = work()
            except TaskvecError as exc:
                error = str(exc)
        result, error = self.broadcast((result, error))
        if error is not None:
            raise TaskvecError(error)
        return result  # type: ignore[return-value]

    def barrier(self) -> None:
        if self.size > 1:
            with _collective():
                dist.barrier()

    def shard(self, batches: list[list[int]]) -> set[int]:
        """Sample idxs that other ranks run: batch k belongs to rank k % size.

        Batches are the one-process run's, in its order, so each runs exactly as it
        would alone (the vectors are bit for bit the same) and every rank gets a
        similar mix of long and short ones.
        """
        return {
            idx for k, batch in enumerate(batches) if k % self.size != self.rank for idx in batch
        }


def join_world(device: torch.device, device_map: str | None = None) -> tuple[World, torch.device]:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT).

    gloo on the CPU, NCCL on GPUs, where each rank takes the GPU of its local rank; with a
    `device_map` a rank spreads the model over every GPU of its node, so it must be its only rank.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), device
    if device_map and device.type == "cuda" and int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
        raise TaskvecError(
            f"device_map: {device_map} spreads the model over every GPU of the node, so run one "
            "process per node (torchrun --nproc-per-node 1 ...)"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            device_id=device if device.type == "cuda" else None,
        )
    return World(dist.get_rank(), dist.get_world_size(), local_rank), device


def leave_world(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def joined_world(
    device: torch.device, device_map: str | None = None
) -> Iterator[tuple[World, torch.device]]:
    """`join_world` for the length of a run; the process group is left on every exit."""
    world, device = join_world(device, device_map)
    try:
        yield world, device
    finally:
        leave_world(world)
