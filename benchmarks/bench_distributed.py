"""Evaluation under torchrun: two CPU ranks (gloo) against one process on the same prompts,
through the documented commands.

    python benchmarks/bench_distributed.py [--config configs/smollm2-135m/cot_5shot_answer.yaml]
        [--samples 32] [--batch-size 32] [--threads N] [--out eval-dist-cpu]

Runs `taskvec evaluate` once each way (the embedded model), checks that predictions.jsonl is
identical, prints every rank's load (samples, prompt and generated tokens, seconds) and writes
benchmarks/results/{out}.json. Threads per process: --threads, else the cores shared out (one
process two threads, each rank one). On a 2-core machine little gain is expected: the two ranks
share the cores one process uses, and each rank loads the model itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]


def run(
    ranks: int, threads: int | None, config: Path, samples: int, batch: int, out: Path
) -> dict[str, Any]:
    """One `taskvec evaluate` (under torchrun when `ranks` > 1): wall time, metrics, predictions."""
    args = ["-m", "taskvec", "evaluate", "--config", str(config), "--output-dir", str(out)]
    args += ["--max-samples", str(samples), "--batch-size", str(batch), "--quiet"]
    launch = [sys.executable] if ranks == 1 else [*TORCHRUN, str(ranks)]
    threads = threads or max(1, (os.cpu_count() or 1) // ranks)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run([*launch, *args], env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{ranks} rank(s) failed:\n{done.stderr[-3000:]}")
    (directory,) = out.iterdir()
    metrics = json.loads((directory / "metrics.json").read_text())
    last = metrics["runs"][-1]
    print(f"{ranks} rank(s), {threads} thread(s) each: {wall:.1f} s wall", flush=True)
    print("  " + done.stdout.strip().replace("\n", "\n  "), flush=True)
    return {
        "ranks": ranks,
        "threads_per_rank": threads,
        "command": " ".join(["python" if a == sys.executable else a for a in [*launch, *args]]),
        "wall_s": wall,
        "timings": last["timings"],
        "per_rank": [
            {k: r[k] for k in ("rank", "n_samples", "planned_tokens", "generate_s")}
            | {k: r["stats"][k] for k in ("prefill_tokens", "generated_tokens", "decode_steps")}
            for r in last["ranks"]
        ],
        "accuracy": metrics["accuracy"],
        "predictions": (directory / "predictions.jsonl").read_text(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/smollm2-135m/cot_5shot_answer.yaml")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, help="OMP threads per process")
    parser.add_argument("--out", default="eval-dist-cpu", help="results file name")
    args = parser.parse_args()
    config = (REPO / args.config).resolve()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ranks in (1, 2):
            out = Path(tmp) / str(ranks)
            rows.append(run(ranks, args.threads, config, args.samples, args.batch_size, out))
    identical = rows[0]["predictions"] == rows[1]["predictions"]
    for row in rows:
        del row["predictions"]
    one, two = (r["timings"]["generate_s"] for r in rows)
    print(f"predictions identical: {identical}; generation {one:.1f} s -> {two:.1f} s")
    result = {
        "workload": args.out,
        "device": f"CPU ({os.cpu_count()} cores, {platform.machine()})",
        "torch": torch.__version__,
        "config": args.config,
        "samples": args.samples,
        "batch_size": args.batch_size,
        "command": " ".join(["python", *sys.argv]),
        "load_average_at_end": list(os.getloadavg()),
        "predictions_identical": identical,
        "generate_speedup": one / two,
        "runs": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    if not identical:
        raise SystemExit("predictions differ between one process and two ranks")


if __name__ == "__main__":
    main()
