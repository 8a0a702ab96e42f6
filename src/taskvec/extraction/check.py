"""`taskvec validate`: everything `extract` checks before the weights load, reported without running."""

from __future__ import annotations

import statistics
from pathlib import Path

from taskvec.extraction.prepare import Prepared, prepare
from taskvec.model.engine import plan


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.1f} MiB"


def validate(config_path: Path) -> tuple[Prepared, list[tuple[str, str]]]:
    """Prepare the run (configs, dataset, model config, tokenizer, every prompt) and describe it;
    loads no weights."""
    prep = prepare(config_path)
    text = prep.model_config.get_text_config()
    cfg, items = prep.config, prep.items
    lengths = [len(it.ids) for it in items]
    tree = plan(items)
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
            if cfg.prefix_cache == "auto"
            else "off",
        ),
        (
            "output size",
            f"{_mib(len(items) * n_keys * text.hidden_size * 4)} of per-sample vectors ({n_keys} keys)",
        ),
        ("output_dir", str(cfg.output_dir)),
        (f"first prompt ({first.sample_id}, {lengths[0]} tokens)", "\n" + first.text),
    ]
    return prep, rows
