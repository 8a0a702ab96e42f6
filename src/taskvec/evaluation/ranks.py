"""Evaluation across torchrun ranks: which prompts this rank generates, and what each rank did.

Sharding sits above the generator: every rank passes all prompts to `Generator.run` and skips
the ones it does not own, so the prefix plan, and hence every prompt's prefill, is the
one-process run's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from taskvec.extraction.distributed import World
from taskvec.extraction.sharding import plan_shards
from taskvec.model import prefill
from taskvec.model.generation import GenerationStats
from taskvec.model.prefix import PrefixNode


@dataclass(frozen=True)
class Shard:
    """This rank's part of a run: the prompts it skips (finished, or another rank's), and every
    rank's planned cost in tokens."""

    skip: set[int]
    planned: list[int]


def shard(
    ids: Sequence[Sequence[int]],
    done: set[int],
    world: World,
    prefix_cache: bool,
    max_new_tokens: int,
    plans: Sequence[Sequence[int]] | None = None,
) -> Shard:
    """The prompts not yet done, dealt to the ranks by prefix-tree branch (`sharding`).

    `plans` partitions the prompt indices into independent prefix plans (steering: one a
    condition, whose steered prefixes are its own); by default all prompts share one."""
    trees = []
    for plan in plans if plans is not None else [range(len(ids))]:
        todo = [i for i in plan if i not in done]
        trees.append(_relabel(prefill.plan([ids[i] for i in todo], prefix_cache), todo))
    lengths = [len(p) for p in ids]
    shares, planned = plan_shards(trees, lengths, max_new_tokens, world.size)
    return Shard(set(range(len(ids))) - set(shares[world.rank]), planned)


def _relabel(node: PrefixNode, index: Sequence[int]) -> PrefixNode:
    """`node`'s tree with member k renamed `index[k]`."""
    return PrefixNode(
        node.prefix_len,
        [index[m] for m in node.members],
        [_relabel(child, index) for child in node.children],
    )


def rank_report(
    world: World, shard: Shard, n_samples: int, stats: GenerationStats, generate_s: float
) -> dict[str, Any]:
    """What this rank did, for the run record (its load against the others')."""
    return {
        "rank": world.rank,
        "n_samples": n_samples,
        "planned_tokens": shard.planned[world.rank],
        "generate_s": generate_s,
        "stats": asdict(stats),
    }


def combined(reports: Sequence[dict[str, Any]]) -> tuple[GenerationStats, float]:
    """Every rank's generation statistics summed, and the wall time (the slowest rank's)."""
    total = GenerationStats()
    for report in reports:
        for f in fields(total):
            setattr(total, f.name, getattr(total, f.name) + report["stats"][f.name])
    return total, max((r["generate_s"] for r in reports), default=0.0)


def load_balance(reports: Sequence[dict[str, Any]]) -> str:
    """One line per rank: samples, tokens computed and seconds, as the CLI prints them."""
    lines = []
    for r in reports:
        s = r["stats"]
        lines.append(
            f"rank {r['rank']}: {r['n_samples']} samples, {s['prefill_tokens']} prompt + "
            f"{s['generated_tokens']} generated tokens (planned {r['planned_tokens']}), "
            f"{r['generate_s']:.1f} s"
        )
    return "\n".join(lines)
