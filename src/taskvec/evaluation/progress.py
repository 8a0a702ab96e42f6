"""Evaluate's progress bar: it counts the tokens the model computes, as extract's does.

Samples finish in bursts (a batch prefills, then its rows finish together many steps later),
so a finishing rate gives ETAs wrong by 10-20x. The bar counts prompt tokens prefilled plus
tokens generated, and the ETA adds what is left of each at that phase's own measured rate
(a generated token costs a whole decode step, several prompt tokens' worth).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tqdm import tqdm

from taskvec.model.generation import GenerationStats

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} tok [{elapsed}{postfix}]"


@dataclass(frozen=True)
class Work:
    """What a run has to compute: prompt tokens (shared prefixes once) and samples to answer."""

    prefill_tokens: int
    samples: int
    max_new_tokens: int


def expected_generated(
    work: Work, stats: GenerationStats, finished: int, finished_tokens: int
) -> int:
    """Tokens the run will generate: the finished samples' mean for every sample (before any
    finishes, `max_new_tokens` each), never less than what is generated already."""
    per_sample = finished_tokens / finished if finished else work.max_new_tokens
    return max(stats.generated_tokens, round(per_sample * work.samples))


def eta_seconds(work: Work, stats: GenerationStats, generated_total: int) -> float | None:
    """Seconds left: remaining prompt tokens at the prefill rate plus remaining generated tokens
    at the decode rate (the prefill rate until a decode step is measured); None before any."""
    if stats.prefill_s <= 0 or stats.prefill_tokens <= 0:
        return None
    prefill_rate = stats.prefill_tokens / stats.prefill_s
    decode_rate = (
        stats.generated_tokens / stats.decode_s
        if stats.decode_s > 0 and stats.generated_tokens
        else prefill_rate
    )
    left_prefill = max(work.prefill_tokens - stats.prefill_tokens, 0)
    left_generated = max(generated_total - stats.generated_tokens, 0)
    return left_prefill / prefill_rate + left_generated / decode_rate


class Progress:
    """The bar: tokens computed of tokens expected, samples finished, tokens/s generated, ETA."""

    def __init__(self, work: Work, enabled: bool) -> None:
        self.work = work
        self.bar = tqdm(
            total=work.prefill_tokens + work.samples * work.max_new_tokens,
            unit="tok",
            unit_scale=True,
            disable=not enabled,
            desc="evaluate",
            dynamic_ncols=True,
            bar_format=BAR_FORMAT,
        )
        self.finished = self.finished_tokens = 0
        self.start = self.shown = time.perf_counter()

    def finish(self, generated: int, stats: GenerationStats) -> None:
        """One sample finished after generating `generated` tokens."""
        self.finished += 1
        self.finished_tokens += generated
        self.step(stats, force=self.finished == self.work.samples)

    def step(self, stats: GenerationStats, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.shown < 1.0:
            return
        self.shown = now
        generated = expected_generated(self.work, stats, self.finished, self.finished_tokens)
        eta = eta_seconds(self.work, stats, generated)
        rate = stats.generated_tokens / max(now - self.start, 1e-9)
        self.bar.total = self.work.prefill_tokens + generated
        self.bar.n = min(stats.prefill_tokens + stats.generated_tokens, self.bar.total)
        left = "?" if eta is None else tqdm.format_interval(eta)
        self.bar.set_postfix_str(
            f"{self.finished}/{self.work.samples} samples, {stats.generated_tokens} generated, "
            f"{rate:.1f} tok/s, ETA {left}",
            refresh=True,
        )

    def close(self) -> None:
        self.bar.close()
