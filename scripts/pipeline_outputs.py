"""Run every flow on the embedded model into one folder, or compare two such folders.

A refactor that promises "behaviour unchanged" is checked by running this at the commit before
and the commit after, then comparing the two folders:

    python scripts/pipeline_outputs.py run /tmp/before      # at the old commit
    python scripts/pipeline_outputs.py run /tmp/after       # at the new commit
    python scripts/pipeline_outputs.py compare /tmp/before /tmp/after

`run` writes small configs under DIR/configs and runs, through the CLI: extraction (the demo
config and two steering sessions), evaluation with prompt-lookup drafts, one-pass
evaluate+extract, patching and steering. `compare` matches files by their path with timestamps
masked: tensors must be `torch.equal`, JSON/JSONL/YAML/CSV equal once timings, dates and paths
are masked, PNGs equal byte for byte. It prints one line a file and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "smollm2-135m"
STAMP = re.compile(r"\d{8}_\d{6}(_\d+)?")
VOLATILE = re.compile(
    r"(seconds|_s$|time|date|created|started|ended|finished|updated|elapsed|duration|share|"
    r"throughput|per_s|host|pid|path|dir$|command|load|rate|tokens_per)",
    re.IGNORECASE,
)


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _configs(out: Path) -> dict[str, Path]:
    """The small configs every flow runs on, written under OUT/configs."""
    cfg, outputs, results = out / "configs", str(out / "outputs"), str(out / "results")
    demo = yaml.safe_load((REPO / "task_vector_config.yaml").read_text())
    demo.update(max_samples=16, output_dir=outputs)
    extract = dict(layers=[5, 15, 25], token_positions=["last", -2], output_dir=outputs)
    van = CONFIGS / "words_chat_past_tense_5shot.yaml"
    cot = CONFIGS / "words_chat_cot_5shot.yaml"
    patch = yaml.safe_load((CONFIGS / "words_patch_quick_chat.yaml").read_text())
    patch.update(
        fewshot_prompt_config=str(CONFIGS / patch["fewshot_prompt_config"]),
        zero_shot_prompt_config=str(CONFIGS / patch["zero_shot_prompt_config"]),
        tasks=["first_letter", "plural"],
        layers=[10, 15, 20],
        tv_max_samples=8,
        dev_max_samples=8,
        test_max_samples=12,
        output_dir=results,
    )
    steer = dict(
        prompt_config=str(van),
        split="test",
        max_samples=12,
        vector="PIPECOT - PIPEVAN",
        position="last",
        session_dir=outputs,
        layers=[15],
        scales=[0.0, 2.0],
        mode="add",
        where="last",
        control="random",
        output_dir=results,
        tag="pipe_steer",
    )
    return {
        "demo": _write(cfg / "demo.yaml", demo),
        "cot": _write(
            cfg / "cot.yaml",
            dict(prompt_config=str(cot), split="train", max_samples=12, tag="PIPECOT", **extract),
        ),
        "van": _write(
            cfg / "van.yaml",
            dict(prompt_config=str(van), split="train", max_samples=12, tag="PIPEVAN", **extract),
        ),
        "onepass": _write(
            cfg / "onepass.yaml",
            dict(prompt_config=str(van), split="test", max_samples=12, tag="PIPEONE", **extract),
        ),
        "patch": _write(cfg / "patch.yaml", patch),
        "steer": _write(cfg / "steer.yaml", steer),
    }


def run(out: Path) -> None:
    """Every flow into OUT, through the CLI of the checkout this script lies in."""
    if out.exists():
        sys.exit(f"{out} exists; give a new folder so nothing is overwritten")
    configs = _configs(out)
    (out / "configs" / "repo.txt").write_text(str(REPO))
    results = str(out / "results")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    cot, van = CONFIGS / "words_chat_cot_5shot.yaml", CONFIGS / "words_chat_past_tense_5shot.yaml"
    common = ["--split", "test", "--max-samples", "12", "--output-dir", results, "--quiet"]
    commands = [
        ["extract", "--config", str(configs["demo"]), "--quiet"],
        ["extract", "--config", str(configs["cot"]), "--quiet"],
        ["extract", "--config", str(configs["van"]), "--quiet"],
        ["evaluate", "--config", str(cot), "--tag", "pipe_drafts", *common],
        ["evaluate", "--config", str(van), "--tag", "pipe_onepass", *common]
        + ["--extract", str(configs["onepass"])],
        ["patch", "--config", str(configs["patch"]), "--quiet"],
        ["steer", "--config", str(configs["steer"]), "--quiet"],
    ]
    for args in commands:
        print("taskvec", " ".join(args), flush=True)
        subprocess.run([sys.executable, "-m", "taskvec", *args], env=env, check=True, cwd=REPO)


def _mask(value: Any, root: Path) -> Any:
    """JSON-like data with timing, date and path fields replaced by a marker (the run folder
    and the checkout that ran it too)."""
    if isinstance(value, dict):
        return {k: "<masked>" if VOLATILE.search(k) else _mask(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, root) for v in value]
    if isinstance(value, str):
        repo = (root / "configs" / "repo.txt").read_text()
        return STAMP.sub("<stamp>", value.replace(str(root), "<root>").replace(repo, "<repo>"))
    return value


def _tensors(value: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor inside a loaded .pt object, by its path in the object."""
    if isinstance(value, torch.Tensor):
        return {prefix: value}
    if not isinstance(value, (dict, list, tuple)):
        return {prefix: torch.tensor(float(value))} if isinstance(value, (int, float)) else {}
    items = value.items() if isinstance(value, dict) else enumerate(value)
    found: dict[str, torch.Tensor] = {}
    for key, item in items:
        found.update(_tensors(item, f"{prefix}/{key}"))
    return found


def _jsonl(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line]


def _same(a: Path, b: Path, roots: tuple[Path, Path]) -> str | None:
    """None when the two files agree, else why not."""
    if a.suffix in (".pt", ".safetensors"):
        if a.suffix == ".pt":
            ta = _tensors(torch.load(a, weights_only=True))
            tb = _tensors(torch.load(b, weights_only=True))
        else:
            from safetensors.torch import load_file

            ta, tb = load_file(a), load_file(b)
        if ta.keys() != tb.keys():
            return "different tensor names"
        bad = [k for k in ta if not torch.equal(ta[k], tb[k])]
        return f"{len(bad)} of {len(ta)} tensors differ" if bad else None
    if a.suffix in (".json", ".yaml", ".jsonl"):
        load = (
            _jsonl
            if a.suffix == ".jsonl"
            else json.loads
            if a.suffix == ".json"
            else yaml.safe_load
        )
        same = _mask(load(a.read_text()), roots[0]) == _mask(load(b.read_text()), roots[1])
        return None if same else "content differs"
    if a.suffix == ".csv":
        return None if a.read_text() == b.read_text() else "content differs"
    return None if a.read_bytes() == b.read_bytes() else "bytes differ"


def compare(a: Path, b: Path) -> int:
    """Print one line per file; 1 when any file differs or is missing on one side."""
    files = {STAMP.sub("<stamp>", str(p.relative_to(a))): p for p in a.rglob("*") if p.is_file()}
    other = {STAMP.sub("<stamp>", str(p.relative_to(b))): p for p in b.rglob("*") if p.is_file()}
    failed = 0
    for key in sorted(files.keys() | other.keys()):
        if key.startswith("configs/") or key.endswith(".log"):
            continue
        if key not in files or key not in other:
            print(f"MISSING {key} (only in {'after' if key in other else 'before'})")
            failed += 1
            continue
        why = _same(files[key], other[key], (a, b))
        print(f"{'DIFF' if why else 'same'} {key}{': ' + why if why else ''}")
        failed += bool(why)
    print(f"{failed} of {len(files | other)} files differ or are missing")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run").add_argument("out", type=Path)
    both = sub.add_parser("compare")
    both.add_argument("before", type=Path)
    both.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run(args.out)
    else:
        sys.exit(compare(args.before, args.after))


if __name__ == "__main__":
    main()
