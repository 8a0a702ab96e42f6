"""`taskvec validate`: everything `extract` checks before the weights load, reported without running."""

from __future__ import annotations

import io
import statistics
from pathlib import Path

import torch

from taskvec.extraction.prepare import Prepared, prepare
from taskvec.model.prefill import plan
from taskvec.session.layout import CONSOLIDATED
from taskvec.session.table import CONSOLIDATE_MAX_BYTES


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.1f} MiB"


def _saved_bytes(obj: object) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell()


def disk_estimate(prep: Prepared) -> dict[str, int]:
    """Bytes a complete session takes, by part: the per-sample files (one saved as the writer
    saves it), `vectors.safetensors` (the same vectors again, in one file, up to its size
    limit), the task vectors and layer files (mean and std of each key, twice) and prompts."""
    first = prep.items[0]
    hidden = prep.text_config.hidden_size
    keys = [key for row in prep.keys for key in row]
    record = {key: torch.zeros(hidden) for key in keys} | {
        "_sample_id": prep.samples[first.idx].id,
        "_sample_idx": first.idx,
        "_seq_len": len(first.ids),
        "_token_indices": list(first.token_indices),
    }
    vectors = len(prep.items) * len(keys) * hidden * 4
    means = {f"{key}{end}": torch.zeros(hidden) for key in keys for end in ("", "_std")}
    return {
        "sample files": len(prep.items) * _saved_bytes(record),
        CONSOLIDATED: vectors if vectors <= CONSOLIDATE_MAX_BYTES else 0,
        "task vectors": 2 * _saved_bytes(means),
        "prompts": sum(len(p.text.encode()) + 100 for p in prep.prompts),
    }


def validate(config_path: Path) -> tuple[Prepared, list[tuple[str, str]]]:
    """Prepare the run (configs, dataset, model config, tokenizer, every prompt) and describe it;
    loads no weights."""
    prep = prepare(config_path)
    text = prep.model_config.get_text_config()
    cfg, items = prep.config, prep.items
    lengths = [len(it.ids) for it in items]
    tree = plan([it.ids for it in items])
    n_keys = len(prep.layers) * len(cfg.token_positions)
    first = prep.prompts[items[0].idx]
    rows = [
        ("model", f"{prep.model_ref.spec} ({prep.model_ref.source})"),
        ("depth", f"{text.num_hidden_layers} blocks, hidden size {text.hidden_size}"),
        ("layers", ", ".join(map(str, prep.layers))),
        ("token positions", ", ".join(map(str, cfg.token_positions))),
        (
            "prompts",
            f"{prep.prompt_config.prompt_type}, {prep.prompt_config.n_shot}-shot, chat template "
            f"{'on' if prep.prompt_config.use_chat_template else 'off'}",
        ),
        (
            "samples",
            f"{len(items)} of split '{cfg.split}'"
            + (f" ({len(prep.skipped)} skipped: positions out of range)" if prep.skipped else ""),
        ),
        (
            "prompt tokens",
            f"min {min(lengths)}, median {statistics.median(lengths):g}, max {max(lengths)}, total "
            f"{sum(lengths):,}",
        ),
        (
            "prefix reuse",
            f"{tree.tokens_computed(lengths):,} of {sum(lengths):,} tokens to compute"
            if cfg.prefix_cache
            else "off",
        ),
        ("disk", _disk_line(disk_estimate(prep), n_keys)),
        ("output_dir", str(cfg.output_dir)),
        (f"first prompt ({first.sample_id}, {lengths[0]} tokens)", "\n" + first.text),
    ]
    return prep, rows


def _disk_line(parts: dict[str, int], n_keys: int) -> str:
    detail = ", ".join(f"{name} {_mib(size)}" for name, size in parts.items() if size)
    return f"about {_mib(sum(parts.values()))} ({detail}; {n_keys} keys)"
