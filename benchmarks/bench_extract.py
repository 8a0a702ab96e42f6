"""Extraction benchmark: HF `output_hidden_states` baselines vs taskvec's engine, in one process.

Usage: python benchmarks/bench_extract.py --workload demo-cpu | seed-gpu | scale-cpu
Writes benchmarks/results/{workload}.json and prints a table. Times are medians over --repeats runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from taskvec.model.capture import block_output, decoder_blocks  # noqa: E402
from taskvec.model.engine import Extractor  # noqa: E402
from taskvec.prompts.item import Item  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SHAPES = REPO.parent / "shared" / "bench" / "qwen2.5-shapes.json"
Vectors = dict[int, torch.Tensor]  # sample idx -> (n_layers, n_positions, hidden) float32


@dataclass
class Workload:
    """A model, tokenised prompts with the token indices to read, and the blocks to read them at."""

    name: str
    model: torch.nn.Module
    items: list[Item]
    layers: list[int]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakRSS:
    """Samples this process's resident memory on a thread; `peak` is the maximum seen (bytes)."""

    def __enter__(self) -> PeakRSS:
        self.proc, self.peak, self.done = (
            psutil.Process(),
            psutil.Process().memory_info().rss,
            threading.Event(),
        )
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


@torch.inference_mode()
def baseline(wl: Workload, batch_size: int) -> Vectors:
    """What most users write: the whole model with output_hidden_states, left-padded batches.

    HF's last hidden state has the final norm applied; the last block's own output is read with a hook.
    """
    model, device = wl.model, next(wl.model.parameters()).device
    n_layers = len(decoder_blocks(model))
    last: dict[str, torch.Tensor] = {}
    hook = decoder_blocks(model)[-1].register_forward_hook(
        lambda m, a, out: last.__setitem__("h", block_output(out))
    )
    out: Vectors = {}
    try:
        for start in range(0, len(wl.items), batch_size):
            chunk = wl.items[start : start + batch_size]
            width = max(len(it.ids) for it in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, it in enumerate(chunk):
                ids[r, width - len(it.ids) :] = torch.tensor(list(it.ids))
                mask[r, width - len(it.ids) :] = 1
            ids, mask = ids.to(device), mask.to(device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            hs = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                output_hidden_states=True,
            ).hidden_states
            for r, it in enumerate(chunk):
                cols = [width - len(it.ids) + t for t in it.token_indices]
                rows = [
                    (last["h"] if layer == n_layers - 1 else hs[layer + 1])[r, cols]
                    for layer in wl.layers
                ]
                out[it.idx] = torch.stack(rows).float().cpu()
    finally:
        hook.remove()
    return out


def taskvec(
    wl: Workload,
    prefix_cache: bool,
    budget: int,
    batch_size: int,
    packed: bool,
    shared: bool = True,
) -> Vectors:
    """The engine; `shared=False` is the path before shared-prefix attention (prefix cache copied
    per row, packed batches under a block-diagonal mask)."""
    engine = Extractor(wl.model, wl.layers, budget, batch_size, prefix_cache, packed)
    engine.shared = engine.shared and shared
    return {i: v for batch in engine.run(wl.items) for i, v in zip(batch.idxs, batch.vectors)}


def distinct_tokens(items: Sequence[Item]) -> int:
    """Tokens in the trie of all prompts: a shared prefix counts once."""
    seqs = sorted(list(it.ids) for it in items)
    shared = 0
    for a, b in zip(seqs, seqs[1:]):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        shared += n
    return sum(len(s) for s in seqs) - shared


def floor_flops(wl: Workload, distinct: int) -> float:
    """Two FLOPs per non-embedding parameter up to the deepest block, per distinct token."""
    blocks = decoder_blocks(wl.model)[: max(wl.layers) + 1]
    params = sum(p.numel() for b in blocks for p in b.parameters())
    return 2.0 * params * distinct


def bf16_peak_tflops(device: torch.device) -> float | None:
    """Measured dense bf16 matmul throughput (8192^3), the device's practical peak."""
    if device.type != "cuda":
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    times = []
    for _ in range(10):
        t = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t)
    return 2 * 8192**3 / statistics.median(times) / 1e12


def max_rel_diff(got: Vectors, ref: Vectors) -> float:
    worst = 0.0
    for idx, r in ref.items():
        g = got[idx]
        worst = max(worst, ((g - r).norm(dim=-1) / r.norm(dim=-1).clamp_min(1e-12)).max().item())
    return worst


Method = Callable[[Workload], Vectors]


def measure(
    wl: Workload, methods: dict[str, Method], repeats: int, baseline_repeats: int | None = None
) -> dict[str, object]:
    """Run every method `repeats` times (the first, the reference, `baseline_repeats` times if
    given; after a small warm-up); medians, throughput, memory, accuracy."""
    device = next(wl.model.parameters()).device
    warm = Workload(wl.name, wl.model, wl.items[:2], wl.layers)
    tokens = sum(len(it.ids) for it in wl.items)
    distinct = distinct_tokens(wl.items)
    flops = floor_flops(wl, distinct)
    peak = bf16_peak_tflops(device)
    rows: dict[str, dict[str, object]] = {}
    reference: Vectors | None = None
    for name, fn in methods.items():
        fn(warm)
        times, mem = [], 0.0
        runs = baseline_repeats if baseline_repeats is not None and not rows else repeats
        for _ in range(runs):
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            with PeakRSS() as rss:
                t = time.perf_counter()
                vectors = fn(wl)
                sync(device)
                times.append(time.perf_counter() - t)
            mem = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else rss.peak
        seconds = statistics.median(times)
        reference = reference or vectors
        rows[name] = {
            "seconds": seconds,
            "seconds_all": times,
            "samples_per_s": len(wl.items) / seconds,
            "tokens_per_s": tokens / seconds,
            "useful_tflops": flops / seconds / 1e12,
            "fraction_of_bf16_peak": (flops / seconds / 1e12 / peak) if peak else None,
            "peak_memory_mb": mem / 2**20,
            "peak_memory_kind": "gpu_max_allocated" if device.type == "cuda" else "cpu_max_rss",
            "max_rel_diff_vs_baseline": max_rel_diff(vectors, reference),
        }
        print(f"  {name:<26} {seconds:8.3f} s (median of {runs})", flush=True)
    base = rows[next(iter(rows))]["seconds"]
    for row in rows.values():
        row["speedup_vs_baseline"] = base / row["seconds"]  # type: ignore[operator]
    return {
        "n_prompts": len(wl.items),
        "tokens_total": tokens,
        "tokens_distinct": distinct,
        "layers": wl.layers,
        "floor_tflop": flops / 1e12,
        "bf16_peak_tflops_measured": peak,
        "methods": rows,
    }


def standard_methods(packed: bool, budget: int, other_budget: int) -> dict[str, Method]:
    """The baselines first (the first is the reference), then taskvec with its defaults for the
    device (`packed` batching or not, `budget` tokens), without prefix reuse, and with the other batching."""
    other = "taskvec_padded" if packed else "taskvec_packed"
    return {
        "baseline_bs1": lambda wl: baseline(wl, 1),
        "baseline_bs16": lambda wl: baseline(wl, 16),
        "taskvec": lambda wl: taskvec(wl, True, budget, 256, packed),
        "taskvec_no_prefix_cache": lambda wl: taskvec(wl, False, budget, 256, packed),
        "taskvec_copying_prefix": lambda wl: taskvec(wl, True, budget, 256, packed, shared=False),
        other: lambda wl: taskvec(wl, True, other_budget, 256, not packed),
    }


def select(methods: dict[str, Method], names: list[str] | None) -> dict[str, Method]:
    """The reference baseline plus the named methods (all when `names` is None)."""
    if names is None:
        return methods
    unknown = set(names) - set(methods)
    if unknown:
        raise SystemExit(f"--methods: unknown {sorted(unknown)}; choose from {sorted(methods)}")
    return {k: m for i, (k, m) in enumerate(methods.items()) if i == 0 or k in names}


def demo_cpu(
    repeats: int, names: list[str] | None, baseline_repeats: int | None
) -> dict[str, object]:
    """The embedded model on 64 real cot 5-shot prompts, the default config's layers and positions."""
    from taskvec.extraction.prepare import prepare
    from taskvec.model.loading import load_model

    prep = prepare(REPO / "task_vector_config.yaml")
    model = load_model(prep.model_ref, torch.float32, torch.device("cpu"))
    wl = Workload("demo-cpu", model, prep.items[:64], prep.layers)
    return {
        "demo-cpu": measure(
            wl, select(standard_methods(True, 1024, 2048), names), repeats, baseline_repeats
        )
    }


def random_model(shape: dict[str, object], device: torch.device) -> torch.nn.Module:
    """A random-weight Qwen2 model with published Qwen2.5 dimensions, bf16 on GPU (float32 on CPU)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    fields = {k: v for k, v in shape.items() if k != "model_type"}
    config = Qwen2Config(**fields, attn_implementation="sdpa")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype)
    return model.eval()


def seed_items(vocab: int, n: int, shared: bool, seed: int = 0) -> list[Item]:
    """n prompts: a 900-token shared prefix (or 900 prompt-specific tokens) plus 60-240 question tokens."""
    g = torch.Generator().manual_seed(seed)
    prefix = torch.randint(0, vocab, (900,), generator=g).tolist()
    items = []
    for i in range(n):
        q = int(torch.randint(60, 241, (1,), generator=g))
        head = prefix if shared else torch.randint(0, vocab, (900,), generator=g).tolist()
        ids = head + torch.randint(0, vocab, (q,), generator=g).tolist()
        items.append(Item(i, ids, [len(ids) - 1]))
    return items


def seed_gpu(
    repeats: int,
    shapes: list[str],
    n: int,
    shapes_file: Path,
    names: list[str] | None,
    save: Callable[[dict[str, object]], None],
) -> dict[str, object]:
    """Qwen2.5-shaped random models, 256 prompts, layers 4..27, position last; with and without a
    shared prefix.

    `save` is called after each variant, so a run cut short keeps what it measured."""
    all_shapes = json.loads(shapes_file.read_text())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    methods = standard_methods(device.type == "cpu", 16384 if device.type == "cuda" else 1024, 2048)
    out: dict[str, object] = {}
    for short in shapes:
        key = next(k for k in all_shapes if k.startswith(f"Qwen/Qwen2.5-{short}-"))
        model = random_model(all_shapes[key], device)
        layers = (
            [4, 8, 12, 16, 20, 24, 27] if all_shapes[key]["num_hidden_layers"] >= 28 else [0, 1]
        )
        for shared in (True, False):
            variant = f"{short}{'' if shared else '-no-prefix'}"
            print(f"{variant}:", flush=True)
            wl = Workload(
                variant, model, seed_items(all_shapes[key]["vocab_size"], n, shared), layers
            )
            out[variant] = {"model_shape": key, **measure(wl, select(methods, names), repeats)}
            save(out)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


SCALE_CHILD = """
import resource, sys, time
sys.path.insert(0, {src!r})
from pathlib import Path
from taskvec.extraction.run import extract
t = time.perf_counter()
extract(Path({config!r}), progress=False)
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def scale_cpu(counts: list[int]) -> dict[str, object]:
    """Peak host memory of full extractions (files written) on a tiny model, by number of samples."""
    import tempfile

    import yaml

    sys.path.insert(0, str(REPO))
    from tests.tiny import save_tiny

    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_tiny(Path(tmp) / "tiny-llama", "llama", n_layers=4)
        prompt = yaml.safe_load((REPO / "configs/smollm2-135m/cot_5shot_answer.yaml").read_text())
        prompt.update(model=str(model_dir))
        prompt["dataset"]["n_train"] = max(counts)
        (Path(tmp) / "prompt.yaml").write_text(yaml.safe_dump(prompt))
        for count in counts:
            config = Path(tmp) / f"extract_{count}.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "prompt_config": str(Path(tmp) / "prompt.yaml"),
                        "layers": [0, 1, 2, 3],
                        "token_positions": ["last", -2],
                        "max_samples": count,
                        "output_dir": str(Path(tmp) / "out"),
                        "device": "cpu",
                    }
                )
            )
            code = SCALE_CHILD.format(src=str(REPO / "src"), config=str(config))
            res = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            seconds, rss_kb = res.stdout.split()[-2:]
            out[str(count)] = {
                "samples": count,
                "seconds": float(seconds),
                "peak_rss_mb": int(rss_kb) / 1024,
            }
            print(
                f"  {count:>6} samples: {float(seconds):7.1f} s, peak RSS {int(rss_kb) / 1024:7.1f} MiB",
                flush=True,
            )
    return out


def print_table(results: dict[str, object]) -> None:
    for variant, res in results.items():
        if not isinstance(res, dict) or "methods" not in res:
            continue
        print(
            f"\n{variant}: {res['n_prompts']} prompts, {res['tokens_total']} tokens "
            f"({res['tokens_distinct']} distinct), "
            f"floor {res['floor_tflop']:.2f} TFLOP"
        )
        print(
            f"{'method':<26}{'seconds':>9}{'speedup':>9}{'samples/s':>11}{'tokens/s':>11}{'TFLOP/s':>9}{'peak%':>7}"
            f"{'mem MiB':>9}{'max rel diff':>14}"
        )
        for name, m in res["methods"].items():
            frac = m["fraction_of_bf16_peak"]
            peak = f"{100 * frac:.1f}" if frac else "-"
            print(
                f"{name:<26}{m['seconds']:9.3f}{m['speedup_vs_baseline']:9.1f}{m['samples_per_s']:11.1f}"
                f"{m['tokens_per_s']:11.0f}{m['useful_tflops']:9.3f}{peak:>7}"
                f"{m['peak_memory_mb']:9.0f}{m['max_rel_diff_vs_baseline']:14.2e}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["demo-cpu", "seed-gpu", "scale-cpu"], required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--baseline-repeats",
        type=int,
        default=None,
        help="demo-cpu: repeats of baseline_bs1 (default: --repeats)",
    )
    parser.add_argument("--shapes", default="1.5B,7B", help="seed-gpu: Qwen2.5 sizes to run")
    parser.add_argument("--prompts", type=int, default=256, help="seed-gpu: number of prompts")
    parser.add_argument(
        "--shapes-file", type=Path, default=SHAPES, help="seed-gpu: Qwen2.5 shapes JSON"
    )
    parser.add_argument(
        "--methods", default=None, help="comma-separated subset (baseline_bs1 always runs)"
    )
    parser.add_argument("--counts", default="256,4096", help="scale-cpu: sample counts")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON path (default benchmarks/results/{workload}.json)",
    )
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({os.cpu_count()} cores, {platform.machine()})"
    )
    names = args.methods.split(",") if args.methods else None
    path = args.out or RESULTS / f"{args.workload}.json"
    path.parent.mkdir(parents=True, exist_ok=True)

    def save(results: dict[str, object]) -> None:
        payload = {
            "workload": args.workload,
            "device": device,
            "torch": torch.__version__,
            "repeats": args.repeats,
            "baseline_repeats": args.baseline_repeats or args.repeats,
            "command": " ".join(["python", *sys.argv]),
            "results": results,
        }
        path.write_text(json.dumps(payload, indent=2) + "\n")

    if args.workload == "demo-cpu":
        results = demo_cpu(args.repeats, names, args.baseline_repeats)
    elif args.workload == "seed-gpu":
        results = seed_gpu(
            args.repeats, args.shapes.split(","), args.prompts, args.shapes_file, names, save
        )
    else:
        results = scale_cpu([int(c) for c in args.counts.split(",")])
    save(results)
    print_table(results)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
