"""Everything an extraction run needs except the weights, checked and tokenised; building it
writes nothing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PretrainedConfig, PreTrainedTokenizerBase

from taskvec.config import ExtractionConfig, load_config
from taskvec.data.base import Sample
from taskvec.data.files import absolute_paths, file_sha256, split_file
from taskvec.data.sources import source
from taskvec.errors import TaskvecError
from taskvec.model.loading import (
    ModelRef,
    load_model_config,
    load_tokenizer,
    resolve_device,
    resolve_model,
)
from taskvec.positions import VectorKey, normalise_layer, resolve_position
from taskvec.prompts.build import build_prompts, select_samples, warn_if_short
from taskvec.prompts.config import PromptConfig, load_prompt_config
from taskvec.prompts.item import Item
from taskvec.prompts.render import RenderedPrompt
from taskvec.session.directories import check_writable


@dataclass
class Prepared:
    """Everything a run needs except the weights; building it writes nothing.

    `samples` is the whole selection; `items` the prompts that will run (an item's
    `idx` is its sample's index), fewer than `samples` only where positions were
    out of range and `on_out_of_range: skip` dropped the sample (see `skipped`).
    """

    config_path: Path
    config: ExtractionConfig
    prompt_config: PromptConfig
    model_ref: ModelRef
    model_config: PretrainedConfig
    tokenizer: PreTrainedTokenizerBase
    layers: list[int]
    samples: list[Sample]
    prompts: list[RenderedPrompt]
    items: list[Item]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    data_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def text_config(self) -> PretrainedConfig:
        """The decoder's own config (multimodal configs nest it)."""
        return self.model_config.get_text_config()

    @property
    def keys(self) -> list[list[str]]:
        return [
            [str(VectorKey(layer, p)) for p in self.config.token_positions] for layer in self.layers
        ]


def prepare(config_path: Path) -> Prepared:
    """Validate configs, read the model config, load data, render and tokenise every prompt."""
    start = time.perf_counter()
    cfg = load_config(config_path)
    given = cfg.prompt_config
    prompt_cfg = given if isinstance(given, PromptConfig) else load_prompt_config(given)
    spec = cfg.model or prompt_cfg.model
    if spec is None:
        raise TaskvecError(
            "model: neither the extraction config nor the prompt config names a model; add `model:` to one"
        )
    check_writable(cfg.output_dir)
    resolve_device(cfg.device)
    base_dir = given.parent if isinstance(given, Path) else config_path.parent
    # absolute paths: the session's config.yaml re-runs from anywhere
    if source(prompt_cfg.dataset.source).local_files:
        prompt_cfg = prompt_cfg.model_copy(
            update={"dataset": absolute_paths(prompt_cfg.dataset, base_dir)}
        )
    samples, pool = select_samples(prompt_cfg, cfg.split, cfg.max_samples, base_dir)
    warn_if_short(cfg.max_samples, samples, cfg.split)
    ref = resolve_model(spec)
    model_config = load_model_config(ref)
    n_layers = model_config.get_text_config().num_hidden_layers
    layers = [normalise_layer(layer, n_layers) for layer in cfg.layers]
    if len(set(layers)) != len(layers):
        raise TaskvecError(
            f"layers: {cfg.layers} name the same block twice (negative layers count from the end); "
            "list each once"
        )
    tokenizer = load_tokenizer(ref)
    prompts, items, skipped = [], [], []
    for idx, (sample, (prompt, token_ids)) in enumerate(
        zip(samples, build_prompts(prompt_cfg, samples, pool, tokenizer))
    ):
        ids = np.asarray(token_ids, dtype=np.int32)
        prompts.append(prompt)
        try:
            indices = [resolve_position(p, len(ids), sample.id) for p in cfg.token_positions]
        except TaskvecError as exc:
            if cfg.on_out_of_range == "error":
                raise TaskvecError(
                    f"{exc} (or set `on_out_of_range: skip` to skip such samples)"
                ) from None
            skipped.append(
                {
                    "sample_idx": idx,
                    "sample_id": sample.id,
                    "n_tokens": len(ids),
                    "reason": str(exc),
                }
            )
            continue
        items.append(Item(idx, ids, indices))
    if not items:
        raise TaskvecError(
            f"token_positions: every sample was out of range (first: {skipped[0]['reason']})"
        )
    timings = {"prepare_s": time.perf_counter() - start}
    return Prepared(
        config_path,
        cfg,
        prompt_cfg,
        ref,
        model_config,
        tokenizer,
        layers,
        samples,
        prompts,
        items,
        skipped,
        timings,
        _data_hashes(prompt_cfg, cfg.split),
    )


def _data_hashes(prompt_cfg: PromptConfig, split: str) -> dict[str, str]:
    """SHA-256 of each data file the run reads (query split and demonstration split), by absolute path."""
    ds = prompt_cfg.dataset
    if not source(ds.source).local_files:
        return {}
    splits = {split} | ({prompt_cfg.demonstrations.split} if prompt_cfg.n_shot else set())
    files = {split_file(ds, name) for name in splits}
    return {str(path): file_sha256(path) for path in sorted(files)}
