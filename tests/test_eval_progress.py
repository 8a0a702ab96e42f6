"""Evaluate's ETA counts tokens, each phase at its own rate, not samples that finish in bursts."""

from __future__ import annotations

import pytest

from taskvec.evaluation.progress import Progress, Work, eta_seconds, expected_generated
from taskvec.model.generation import GenerationStats

WORK = Work(prefill_tokens=10_000, samples=64, max_new_tokens=32)


def test_eta_before_any_sample_finishes_counts_the_prompt_tokens_left() -> None:
    """Half the prompts prefilled in 10 s and nothing finished: a finishing rate has no ETA."""
    stats = GenerationStats(prefill_s=10.0, prefill_tokens=5_000)
    generated = expected_generated(WORK, stats, finished=0, finished_tokens=0)
    assert generated == 64 * 32  # max_new_tokens each until samples finish
    assert eta_seconds(WORK, stats, generated) == pytest.approx(5_000 / 500 + 2_048 / 500)


def test_eta_late_in_decoding_uses_the_decode_rate_and_the_mean_answer_length() -> None:
    """40 of 64 finished after 50 s; samples/s would say 30 s more, the tokens left take 2 s."""
    stats = GenerationStats(
        prefill_s=20.0, prefill_tokens=10_000, decode_s=30.0, generated_tokens=600
    )
    generated = expected_generated(WORK, stats, finished=40, finished_tokens=400)
    assert generated == 640  # 10 tokens a sample
    assert eta_seconds(WORK, stats, generated) == pytest.approx(40 / 20)
    assert eta_seconds(WORK, GenerationStats(), generated) is None


def test_the_bar_counts_tokens_and_shows_samples_and_eta() -> None:
    bar = Progress(WORK, enabled=False)
    stats = GenerationStats(
        prefill_s=20.0, prefill_tokens=10_000, decode_s=1.0, generated_tokens=20
    )
    for _ in range(2):
        bar.finish(10, stats)
    bar.step(stats, force=True)
    assert (bar.bar.n, bar.bar.total) == (10_020, 10_640)
    assert "2/64 samples" in bar.bar.postfix and "ETA 00:31" in bar.bar.postfix
    bar.close()
