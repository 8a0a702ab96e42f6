"""Profile one taskvec extraction of the seed-gpu workload: where does the time go?

Usage: python benchmarks/profile_engine.py [--shape 1.5B] [--no-shared] [--packed]
Prints wall time (median of 3, warm) and the top operators by device time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import SHAPES, random_model, seed_items, sync  # noqa: E402
from taskvec.model.engine import Extractor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="1.5B")
    parser.add_argument("--shapes-file", type=Path, default=SHAPES)
    parser.add_argument("--no-shared", action="store_true")
    parser.add_argument("--packed", action="store_true")
    parser.add_argument("--budget", type=int, default=16384)
    parser.add_argument("--prompts", type=int, default=256)
    args = parser.parse_args()
    shapes = json.loads(args.shapes_file.read_text())
    key = next(k for k in shapes if k.startswith(f"Qwen/Qwen2.5-{args.shape}-"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = random_model(shapes[key], device)
    layers = [4, 8, 12, 16, 20, 24, 27]
    items = seed_items(shapes[key]["vocab_size"], args.prompts, not args.no_shared)
    engine = Extractor(model, layers, args.budget, 256, True, args.packed)

    def run() -> float:
        sync(device)
        t = time.perf_counter()
        for _ in engine.run(items):
            pass
        sync(device)
        return time.perf_counter() - t

    run()
    print(
        f"{key} budget={args.budget} packed={args.packed} shared={not args.no_shared}: "
        f"median {statistics.median(run() for _ in range(3)):.3f} s",
        flush=True,
    )
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=18, max_name_column_width=60))


if __name__ == "__main__":
    main()
