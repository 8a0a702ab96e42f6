"""Evaluation benchmark: the previous generation path (left-padded `generate`, batch 16) vs
taskvec's generator.

Usage: python benchmarks/bench_eval.py --workload eval-cpu | eval-gpu [--samples N] [--repeats R]
eval-cpu: the embedded model, cot 5-shot and vanilla 5-shot prompt configs (max_new_tokens as
  shipped), greedy; the outputs of every method must be identical. Ablations: taskvec without
  prompt-lookup drafts, and without oneDNN-prepacked linears. eval-gpu: a random-weight
  Qwen2.5-1.5B-shaped model, 256 prompts (900-token shared prefix + 60-240 question tokens), 128 new
  tokens forced (eos ignored); needs CUDA. Writes benchmarks/results/{workload}.json and prints a
  table; times are medians over --repeats runs.
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
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from transformers import GenerationConfig  # noqa: E402

from bench_extract import RESULTS, SHAPES, random_model, seed_items, sync  # noqa: E402
from taskvec.evaluation.options import EvalOptions  # noqa: E402
from taskvec.model.generation import GenerationStats, Generator  # noqa: E402
from taskvec.prompts.config import Generation  # noqa: E402

Outputs = list[list[int]]
Method = Callable[[], tuple[Outputs, GenerationStats | None]]
EXTRACT_LAYERS = [0, 7, 14, 21, 29]
# taskvec evaluate's default --batch-size
BATCH = int(EvalOptions.model_fields["batch_size"].default)
CPU_CONFIGS = {"cot-5shot": "cot_5shot_answer.yaml", "vanilla-5shot": "vanilla_5shot_answer.yaml"}


def measure(
    methods: dict[str, Method],
    repeats: int,
    device: torch.device,
    baseline_repeats: int | None = None,
) -> dict[str, Any]:
    """Each method `repeats` times (the first, the baseline, `baseline_repeats` times if given):
    median seconds, generated tokens/s, prefill/decode split, identical outputs."""
    rows: dict[str, dict[str, Any]] = {}
    reference: Outputs | None = None
    for name, fn in methods.items():
        times, outputs, stats = [], None, None
        runs = baseline_repeats if baseline_repeats is not None and not rows else repeats
        for _ in range(runs):
            sync(device)
            t = time.perf_counter()
            outputs, stats = fn()
            sync(device)
            times.append(time.perf_counter() - t)
        assert outputs is not None
        reference = reference or outputs
        seconds, tokens = statistics.median(times), sum(map(len, outputs))
        model_s = (stats.prefill_s + stats.decode_s) if stats else None
        rows[name] = {
            "seconds": seconds,
            "seconds_all": times,
            "generated_tokens": tokens,
            "tokens_per_s": tokens / seconds,
            "prefill_share": stats.prefill_s / model_s if stats and model_s else None,
            "prefill_tokens": stats.prefill_tokens if stats else None,
            "decode_steps": stats.decode_steps if stats else None,
            "draft_tokens": stats.draft_tokens if stats else None,
            "accepted_draft_tokens": stats.accepted_tokens if stats else None,
            "identical_to_first": sum(a == b for a, b in zip(outputs, reference)),
        }
        share = rows[name]["prefill_share"]
        print(
            f"  {name:<22} {seconds:8.1f} s (median of {runs}), {tokens / seconds:7.1f} tokens/s"
            + (
                f", prefill {share:.0%} / decode {1 - share:.0%}, {stats.decode_steps} steps"
                if stats and share is not None
                else ""
            )
            + (
                f", drafts {stats.accepted_tokens}/{stats.draft_tokens} accepted"
                if stats and stats.draft_tokens
                else ""
            ),
            flush=True,
        )
    base = rows[next(iter(rows))]["seconds"]
    for row in rows.values():
        row["speedup_vs_hf_generate_bs16"] = base / row["seconds"]
    return {"n_prompts": len(reference or []), "methods": rows}


def eval_cpu(samples: int, repeats: int, baseline_repeats: int | None) -> dict[str, Any]:
    """The embedded model on the first `samples` test prompts of each shipped 5-shot config;
    `taskvec_with_extract` also reads the default extraction config's layers at the last token
    (one pass for evaluation and extraction)."""
    from hf_generate import generate_padded
    from taskvec.evaluation.prepare import prepare_evaluation
    from taskvec.evaluation.stopping import answer_stop_pattern, eos_ids
    from taskvec.model.generation import Reading
    from taskvec.model.loading import load_model

    out: dict[str, Any] = {}
    model = None
    for variant, file in CPU_CONFIGS.items():
        prep = prepare_evaluation(
            REPO / "configs" / "smollm2-135m" / file, max_samples=samples, split="test"
        )
        model = model or load_model(prep.model_ref, torch.float32, torch.device("cpu"))
        gen, tok = prep.prompt_config.generation, prep.tokenizer
        stop = answer_stop_pattern(prep.prompt_config.answer_format)

        def taskvec(
            reading: Reading | None = None, **options: Any
        ) -> tuple[Outputs, GenerationStats]:
            generator = Generator(
                model, gen, eos_ids(model, tok), BATCH, tok, stop, reading=reading, **options
            )
            results = {f.idx: f.tokens for f in generator.run(prep.ids)}
            return [results[i] for i in range(len(prep.ids))], generator.stats

        print(
            f"{variant}: {len(prep.ids)} prompts, max_new_tokens {gen.max_new_tokens}", flush=True
        )
        methods: dict[str, Method] = {
            "hf_generate_bs16": lambda: (
                generate_padded(model, tok, prep.ids, gen, 16, stop),
                None,
            ),
            "taskvec": taskvec,
            "taskvec_with_extract": lambda: taskvec(
                Reading(EXTRACT_LAYERS, [[len(ids) - 1] for ids in prep.ids])
            ),
            # ablations: what the drafts and the packed weights add
            "taskvec_no_drafts": lambda: taskvec(draft_tokens=0),
            "taskvec_unpacked": lambda: taskvec(packed=False),
        }
        out[variant] = {
            "config": f"configs/smollm2-135m/{file}",
            "max_new_tokens": gen.max_new_tokens,
            "prompt_tokens": sum(map(len, prep.ids)),
            "extract_layers": EXTRACT_LAYERS,
            "taskvec_batch_size": BATCH,
            **measure(methods, repeats, torch.device("cpu"), baseline_repeats),
        }
        m = out[variant]["methods"]
        out[variant]["extract_overhead"] = (
            m["taskvec_with_extract"]["seconds"] / m["taskvec"]["seconds"]
        )
    return out


def hf_forced(
    model: torch.nn.Module, prompts: Outputs, new_tokens: int, batch_size: int
) -> Outputs:
    """Left-padded `generate`, eos ignored: exactly `new_tokens` per prompt."""
    device = next(model.parameters()).device
    cfg = GenerationConfig(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )
    out: Outputs = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        width = max(map(len, chunk))
        ids = torch.tensor([[0] * (width - len(p)) + p for p in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
        with torch.inference_mode():
            gen = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
        out += gen[:, width:].tolist()
    return out


def eval_gpu(repeats: int, n: int, shapes_file: Path, batch_size: int) -> dict[str, Any]:
    """Random Qwen2.5-1.5B shapes in bf16, `n` prompts with a 900-token shared prefix, 128 forced
    new tokens."""
    if not torch.cuda.is_available():
        raise SystemExit(
            "eval-gpu: no CUDA device is visible; this workload runs only on a GPU machine"
        )
    shapes = json.loads(shapes_file.read_text())
    key = next(k for k in shapes if k.startswith("Qwen/Qwen2.5-1.5B-"))
    model = random_model(shapes[key], torch.device("cuda"))
    prompts = [list(it.ids) for it in seed_items(shapes[key]["vocab_size"], n, shared=True)]
    settings = Generation(max_new_tokens=128, do_sample=False)

    def taskvec() -> tuple[Outputs, GenerationStats]:
        generator = Generator(model, settings, [], batch_size, ignore_eos=True)
        results = {f.idx: f.tokens for f in generator.run(prompts)}
        return [results[i] for i in range(n)], generator.stats

    methods: dict[str, Method] = {
        "hf_generate_bs16": lambda: (hf_forced(model, prompts, 128, 16), None),
        "taskvec": taskvec,
    }
    return {
        "1.5B": {
            "model_shape": key,
            "new_tokens": 128,
            "batch_size": batch_size,
            **measure(methods, repeats, torch.device("cuda")),
        }
    }


def check_identical(results: dict[str, Any]) -> None:
    """Greedy outputs of every method must equal the first method's, prompt for prompt."""
    for variant, res in results.items():
        for name, row in res["methods"].items():
            if row["identical_to_first"] != res["n_prompts"]:
                raise SystemExit(
                    f"{variant}: {name} differs from hf_generate_bs16 on "
                    f"{res['n_prompts'] - row['identical_to_first']} of {res['n_prompts']} prompts"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["eval-cpu", "eval-gpu"], required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=32, help="eval-cpu: test samples per config")
    parser.add_argument(
        "--baseline-repeats",
        type=int,
        default=None,
        help="repeats of hf_generate_bs16 (default: --repeats)",
    )
    parser.add_argument("--prompts", type=int, default=256, help="eval-gpu: number of prompts")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="eval-gpu: taskvec's rows decoding at once"
    )
    parser.add_argument(
        "--shapes-file", type=Path, default=SHAPES, help="eval-gpu: Qwen2.5 shapes JSON"
    )
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
    if args.workload == "eval-cpu":
        results = eval_cpu(args.samples, args.repeats, args.baseline_repeats)
    else:
        results = eval_gpu(args.repeats, args.prompts, args.shapes_file, args.batch_size)
    path = args.out or RESULTS / f"{args.workload}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "workload": args.workload,
        "device": device,
        "torch": torch.__version__,
        "repeats": args.repeats,
        "baseline_repeats": args.baseline_repeats or args.repeats,
        "load_average_at_end": os.getloadavg(),
        "command": " ".join(["python", *sys.argv]),
        "results": results,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwritten: {path}")
    for variant, res in results.items():
        m = res["methods"]
        print(
            f"{variant}: taskvec {m['taskvec']['speedup_vs_hf_generate_bs16']:.1f}x faster than "
            "hf_generate_bs16"
            + (
                f"; evaluate+extract in one pass {res['extract_overhead']:.2f}x evaluate alone"
                if "extract_overhead" in res
                else ""
            )
        )
    check_identical(results)


if __name__ == "__main__":
    main()
