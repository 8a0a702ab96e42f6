"""Steering benchmark: a sweep of conditions as one batched taskvec generation vs a naive loop.

Usage: python benchmarks/bench_steer.py --workload steer-cpu [--samples N] [--repeats R]
    [--baseline-repeats R] [--batch-size B]

steer-cpu: the embedded model, past_tense vanilla 5-shot chat prompts (train split, the first N,
default 64), the direction cot 5-shot minus vanilla 5-shot (mean last-token states of 32 other
train prompts each, computed here) added at the last prompt token: the baseline plus 6
conditions (blocks 10, 15, 20 x scales 2, 4), greedy.

naive: Hugging Face `generate` on left-padded batches of 16, condition by condition, the
steering as one forward hook (`taskvec.model.steer.steering_hooks`, what a user writes by hand).
taskvec: every condition and the baseline in one `Generator` run (shared prefixes, continuous
batching, drafts), `batch_size` the steer config's default. Tokens must be identical.

Writes benchmarks/results/{workload}.json and .log; times are medians over the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from hf_generate import generate_padded  # noqa: E402
from taskvec.evaluation.prepare import EvalPrepared, prepare_evaluation  # noqa: E402
from taskvec.evaluation.stopping import eos_ids  # noqa: E402
from taskvec.model.generation import Generator  # noqa: E402
from taskvec.model.intervene import mean_last_token_vectors  # noqa: E402
from taskvec.model.loading import load_model  # noqa: E402
from taskvec.model.steer import steering_hooks  # noqa: E402
from taskvec.model.steering import Steer  # noqa: E402
from taskvec.steering.config import SteerConfig  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
CONFIGS = REPO / "configs" / "smollm2-135m"
LAYERS, SCALES = [10, 15, 20], [2.0, 4.0]
Outputs = list[list[list[int]]]  # per condition (baseline first), per prompt: generated tokens
LINES: list[str] = []


def log(line: str) -> None:
    print(line, flush=True)
    LINES.append(line)


def direction(model: Any, samples: int, skip: int) -> dict[int, torch.Tensor]:
    """cot 5-shot minus vanilla 5-shot mean last-token states on train prompts
    `skip`..`skip+samples`."""
    means = []
    for file in ("words_chat_cot_5shot.yaml", "words_chat_past_tense_5shot.yaml"):
        prep = prepare_evaluation(CONFIGS / file, split="train", max_samples=skip + samples)
        means.append(mean_last_token_vectors(model, prep.ids[skip:], LAYERS))
    return {layer: means[0][layer] - means[1][layer] for layer in LAYERS}


def steers(vectors: dict[int, torch.Tensor]) -> list[Steer | None]:
    out: list[Steer | None] = [None]
    out += [Steer({layer: vectors[layer]}, "add", s, "last") for layer in LAYERS for s in SCALES]
    return out


def naive(model: Any, prep: EvalPrepared, conditions: list[Steer | None]) -> Outputs:
    """Condition by condition: `generate`, batch 16, with one steering hook."""
    out: Outputs = []
    for steer in conditions:
        hooks = (
            steering_hooks(model, dict(steer.vectors), steer.mode, steer.scale, steer.where)
            if steer is not None
            else nullcontext()
        )
        with hooks:
            out.append(
                generate_padded(model, prep.tokenizer, prep.ids, prep.prompt_config.generation, 16)
            )
    return out


def batched(model: Any, prep: EvalPrepared, conditions: list[Steer | None], batch: int) -> Outputs:
    """Every condition and the baseline in one generator run."""
    n = len(prep.ids)
    gen = Generator(
        model,
        prep.prompt_config.generation,
        eos_ids(model, prep.tokenizer),
        batch,
        prep.tokenizer,
    )
    ids = [p for _ in conditions for p in prep.ids]
    got = {f.idx: f.tokens for f in gen.run(ids, steers=[c for c in conditions for _ in prep.ids])}
    return [[got[c * n + i] for i in range(n)] for c in range(len(conditions))]


def timed(fn: Callable[[], Outputs], runs: int) -> tuple[Outputs, list[float]]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    assert out is not None
    return out, times


def steer_cpu(samples: int, repeats: int, baseline_repeats: int, batch: int) -> dict[str, Any]:
    prep = prepare_evaluation(
        CONFIGS / "words_chat_past_tense_5shot.yaml", split="train", max_samples=samples
    )
    model = load_model(prep.model_ref, torch.float32, torch.device("cpu"))
    conditions = steers(direction(model, 32, samples))
    log(
        f"steer-cpu: {len(prep.ids)} prompts x {len(conditions)} runs (baseline + "
        f"{len(conditions) - 1} conditions: blocks {LAYERS} x scales {SCALES}, add at last), "
        f"max_new_tokens {prep.prompt_config.generation.max_new_tokens}, "
        f"torch threads {torch.get_num_threads()}"
    )
    methods = {
        "naive_hf_generate_bs16_hook": (lambda: naive(model, prep, conditions), baseline_repeats),
        "taskvec": (lambda: batched(model, prep, conditions, batch), repeats),
    }
    rows: dict[str, dict[str, Any]] = {}
    reference: Outputs | None = None
    for name, (fn, runs) in methods.items():
        out, times = timed(fn, runs)
        reference = reference or out
        same = sum(a == b for ca, cb in zip(out, reference) for a, b in zip(ca, cb))
        tokens = sum(len(t) for c in out for t in c)
        rows[name] = {
            "seconds": statistics.median(times),
            "seconds_all": times,
            "generated_tokens": tokens,
            "identical_to_naive": same,
            "load_average": os.getloadavg(),
        }
        log(
            f"  {name:<30} {statistics.median(times):8.1f} s (median of {runs}: "
            f"{', '.join(f'{t:.1f}' for t in times)}), {tokens} tokens, identical {same}/"
            f"{len(conditions) * len(prep.ids)}, load average {os.getloadavg()[0]:.1f}"
        )
    ratio = rows["naive_hf_generate_bs16_hook"]["seconds"] / rows["taskvec"]["seconds"]
    changed = [sum(a != b for a, b in zip(c, reference[0])) for c in (reference or [])[1:]]
    log(f"taskvec {ratio:.1f}x faster than the naive loop; prompts changed per condition {changed}")
    return {
        "config": "configs/smollm2-135m/words_chat_past_tense_5shot.yaml",
        "split": "train",
        "n_prompts": len(prep.ids),
        "n_runs": len(conditions),
        "layers": LAYERS,
        "scales": SCALES,
        "taskvec_batch_size": batch,
        "changed_vs_baseline": changed,
        "speedup": ratio,
        "methods": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["steer-cpu"], required=True)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="taskvec runs")
    parser.add_argument("--baseline-repeats", type=int, default=1, help="naive loop runs")
    parser.add_argument(
        "--batch-size", type=int, default=int(SteerConfig.model_fields["batch_size"].default)
    )
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    result = steer_cpu(args.samples, args.repeats, args.baseline_repeats, args.batch_size)
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "workload": args.workload,
        "device": f"CPU ({os.cpu_count()} cores, {platform.machine()})",
        "torch": torch.__version__,
        "command": " ".join(["python", *sys.argv]),
        "note": "a shared machine: the load average (other jobs) is recorded with each method",
        "results": result,
    }
    (RESULTS / f"{args.workload}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"{args.workload}.log").write_text("\n".join(LINES) + "\n")
    print(f"written: {RESULTS / args.workload}.json and .log")
    total = result["n_prompts"] * result["n_runs"]
    if result["methods"]["taskvec"]["identical_to_naive"] != total:
        raise SystemExit("taskvec's tokens differ from the naive loop's")


if __name__ == "__main__":
    main()
