"""What an extraction session says about itself: config.yaml (re-runs as it is), prompts.jsonl
and metadata.json, all built from the run's `SessionSource`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Protocol

import torch
from transformers import PretrainedConfig, PreTrainedTokenizerBase

from taskvec.config import ExtractionConfig
from taskvec.data.base import Sample
from taskvec.model.loading import ModelRef, dtype_name
from taskvec.prompts.config import PromptConfig
from taskvec.prompts.item import Item
from taskvec.prompts.render import RenderedPrompt, start_token
from taskvec.session.atomic import save_text, save_yaml
from taskvec.session.directories import create_session
from taskvec.session.layout import SessionPaths, session_name
from taskvec.versions import package_versions


class SessionSource(Protocol):
    """What a session is written from: an extraction run's checked configs and tokenised prompts
    (`taskvec.extraction.prepare.Prepared`)."""

    config: ExtractionConfig
    prompt_config: PromptConfig
    model_ref: ModelRef
    tokenizer: PreTrainedTokenizerBase
    layers: list[int]
    samples: list[Sample]
    prompts: list[RenderedPrompt]
    items: list[Item]
    skipped: list[dict[str, Any]]
    data_sha256: dict[str, str]

    @property
    def text_config(self) -> PretrainedConfig: ...

    @property
    def keys(self) -> list[list[str]]: ...


def resolved_config(prep: SessionSource) -> dict[str, Any]:
    """config.yaml: the extraction config as run, model resolved and the prompt config inlined."""
    cfg = prep.config.model_dump(mode="json")
    cfg["model"] = prep.model_ref.spec
    # inlined: this file re-runs as it is
    cfg["prompt_config"] = prep.prompt_config.model_dump(mode="json")
    return cfg


def write_prompts(paths: SessionPaths, prep: SessionSource) -> None:
    """prompts.jsonl: one line per sample (skipped ones too) with its prompt text and token count."""
    tokens = {it.idx: len(it.ids) for it in prep.items} | {
        s["sample_idx"]: s["n_tokens"] for s in prep.skipped
    }
    lines = [
        json.dumps(
            {
                "sample_idx": idx,
                "sample_id": prompt.sample_id,
                "prompt": prompt.text,
                "n_tokens": tokens[idx],
                "add_special_tokens": prompt.add_special_tokens,
                "demo_ids": list(prompt.demo_ids),
            },
            ensure_ascii=False,
        )
        for idx, prompt in enumerate(prep.prompts)
    ]
    save_text(paths.prompts, "\n".join(lines) + "\n")


def session_metadata(
    prep: SessionSource,
    paths: SessionPaths,
    device: torch.device,
    dtype: torch.dtype,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """metadata.json: the run's fixed fields (model, layers, positions, prompts, samples,
    versions) plus `extra`."""
    cfg = prep.config
    return {
        "session_name": paths.name,
        "status": "running",
        "model": prep.model_ref.spec,
        "model_id": prep.model_ref.identity,
        "model_source": prep.model_ref.source,
        "gguf_file": prep.model_ref.gguf_file,
        "model_short": prep.model_ref.short_name,
        "n_model_layers": prep.text_config.num_hidden_layers,
        "hidden_size": prep.text_config.hidden_size,
        "layer_convention": "block_output",
        "layers": prep.layers,
        "layers_as_written": cfg.layers,
        "token_positions": cfg.token_positions,
        "keys": [k for row in prep.keys for k in row],
        "prompt_type": prep.prompt_config.prompt_type,
        "n_shot": prep.prompt_config.n_shot,
        "prompt_config": "inline"
        if isinstance(cfg.prompt_config, PromptConfig)
        else str(cfg.prompt_config),
        "dataset": prep.prompt_config.dataset.model_dump(mode="json"),
        "data_sha256": prep.data_sha256,
        "split": cfg.split,
        "max_samples": cfg.max_samples,
        # fewer than max_samples when the split is shorter (warned)
        "n_split_samples_used": len(prep.samples),
        "n_samples": len(prep.items),
        "sample_ids": [prep.samples[it.idx].id for it in prep.items],
        "sample_idxs": [it.idx for it in prep.items],
        "skipped": prep.skipped,
        "use_chat_template": prep.prompt_config.use_chat_template,
        "add_special_tokens": prep.prompts[0].add_special_tokens,
        "start_token": start_token(prep.prompt_config, prep.tokenizer).record(),
        "dtype": dtype_name(dtype),
        "device": str(device),
        "seed": cfg.seed,
        "versions": package_versions(),
        **extra,
    }


def new_session(prep: SessionSource) -> SessionPaths:
    """Create the session directories and write its config and prompts."""
    cfg = prep.config
    prompt_cfg = prep.prompt_config
    name = session_name(
        cfg.tag,
        prompt_cfg.prompt_type,
        prompt_cfg.n_shot,
        cfg.split,
        prep.model_ref.short_name,
        datetime.now(),
    )
    paths = create_session(cfg.output_dir, name)
    save_yaml(paths.config, resolved_config(prep))
    write_prompts(paths, prep)
    return paths
