"""End-of-run pass: task vectors + vectors.safetensors from the in-memory table vs streamed back
from the files.

    python benchmarks/bench_summary.py [--samples 4096] [--hidden 576] [--repeats 3]

Prints the median of each and the ratio (files / memory), in one process on the same data.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import taskvec.session.table as table_module
from taskvec.session.atomic import save_torch
from taskvec.session.layout import SessionPaths
from taskvec.session.table import SampleTable

LAYERS = [0, 5, 10, 15, 20, 25, 29]
KEYS = [[f"layer_{layer}_pos_{p}" for p in ("last", -2)] for layer in LAYERS]


def _timed(run: callable, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, hidden, idxs = args.samples, args.hidden, list(range(args.samples))
    vectors = torch.randn(n, len(LAYERS), 2, hidden)
    with tempfile.TemporaryDirectory() as tmp:
        paths = SessionPaths("bench", Path(tmp) / "tv", Path(tmp) / "raw")
        paths.task_vector_dir.mkdir()
        paths.raw_dir.mkdir()
        for i in idxs:
            record = {
                key: vectors[i, li, pi].clone()
                for li, row in enumerate(KEYS)
                for pi, key in enumerate(row)
            }
            save_torch(paths.sample_file(i), record | {"_sample_idx": i})

        def from_memory() -> None:
            table = SampleTable(paths, LAYERS, KEYS, idxs, hidden)
            for start in range(0, n, 64):
                table.put(idxs[start : start + 64], vectors[start : start + 64])
            assert table.summarise()

        def from_files() -> None:
            cap, table_module.CONSOLIDATE_MAX_BYTES = table_module.CONSOLIDATE_MAX_BYTES, 0
            try:
                assert not SampleTable(paths, LAYERS, KEYS, idxs, hidden).summarise()
            finally:
                table_module.CONSOLIDATE_MAX_BYTES = cap

        files, memory = _timed(from_files, args.repeats), _timed(from_memory, args.repeats)
    print(
        f"{n} samples x {len(LAYERS) * 2} keys x {hidden}, torch threads "
        f"{torch.get_num_threads()}, medians of {args.repeats}:"
    )
    print(
        f"  statistics streamed from files: {files:.2f} s ({1e3 * files / n:.2f} ms/sample; no "
        "vectors.safetensors)"
    )
    print(
        f"  in-memory table (+ vectors.safetensors): {memory:.2f} s ({1e3 * memory / n:.2f} ms/sample)"
    )
    print(f"  ratio files / memory: {files / memory:.1f}x")


if __name__ == "__main__":
    main()
