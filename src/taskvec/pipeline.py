"""Extraction end to end: validate and prepare everything, then run the model and write a session."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from tqdm import tqdm
from transformers import PretrainedConfig, PreTrainedTokenizerBase

import taskvec
from taskvec.config import ExtractionConfig, load_config
from taskvec.data import available_splits, load_split
from taskvec.data.base import Sample
from taskvec.engine import Extractor, Item
from taskvec.errors import TaskvecError
from taskvec.models import ModelRef, load_model, load_model_config, load_tokenizer, resolve_device, resolve_dtype, resolve_model
from taskvec.positions import normalise_layer, resolve_position, vector_key
from taskvec.prompts.config import PromptConfig, load_prompt_config
from taskvec.prompts.fewshot import select_demonstrations
from taskvec.prompts.render import RenderedPrompt, render_prompt
from taskvec.store import SessionPaths, SessionWriter, check_writable, create_session, save_json, save_text, save_yaml, session_name

DEFAULT_BATCH_TOKENS = {"packed": 1024, "padded": 16384}


@dataclass
class Prepared:
    """Everything a run needs except the weights; building it writes nothing."""

    config: ExtractionConfig
    prompt_config: PromptConfig
    model_ref: ModelRef
    model_config: PretrainedConfig
    tokenizer: PreTrainedTokenizerBase
    layers: list[int]
    samples: list[Sample]
    prompts: list[RenderedPrompt]
    items: list[Item]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def keys(self) -> list[list[str]]:
        return [[vector_key(layer, p) for p in self.config.token_positions] for layer in self.layers]


def _text_config(model_config: PretrainedConfig) -> PretrainedConfig:
    """The decoder's own config (multimodal configs nest it)."""
    return model_config.get_text_config()


def _sliding_window(model_config: PretrainedConfig) -> bool:
    """Whether any block attends within a sliding window (Mistral-, Gemma-style)."""
    text = _text_config(model_config)
    return bool(getattr(text, "use_sliding_window", False)) or "sliding_attention" in (getattr(text, "layer_types", None) or [])


def prepare(config_path: Path) -> Prepared:
    """Validate configs, read the model config, load data, render and tokenise every prompt."""
    start = time.perf_counter()
    cfg = load_config(config_path)
    inline = isinstance(cfg.prompt_config, PromptConfig)
    prompt_cfg = cfg.prompt_config if inline else load_prompt_config(cfg.prompt_config)
    spec = cfg.model or prompt_cfg.model
    if spec is None:
        raise TaskvecError("model: neither the extraction config nor the prompt config names a model; add `model:` to one")
    check_writable(cfg.output_dir)
    resolve_device(cfg.device)
    base_dir = config_path.parent if inline else cfg.prompt_config.parent
    dataset = prompt_cfg.dataset
    demo_split = prompt_cfg.demonstrations.split
    if dataset.source != "hf":
        splits = available_splits(dataset)
        checks = [("split", cfg.split)] + ([("demonstrations.split", demo_split)] if prompt_cfg.n_shot else [])
        for field_name, split in checks:
            if split not in splits:
                raise TaskvecError(f"{field_name}: '{split}' is not a split of the dataset; use one of: {', '.join(splits)}")
    split_samples = load_split(dataset, cfg.split, base_dir)
    samples = split_samples[: cfg.max_samples]
    if not prompt_cfg.n_shot:
        pool: list[Sample] = []
    else:
        pool = split_samples if demo_split == cfg.split else load_split(dataset, demo_split, base_dir)
    ref = resolve_model(spec)
    model_config = load_model_config(ref)
    n_layers = _text_config(model_config).num_hidden_layers
    layers = [normalise_layer(layer, n_layers) for layer in cfg.layers]
    if len(set(layers)) != len(layers):
        raise TaskvecError(f"layers: {cfg.layers} name the same block twice (negative layers count from the end); list each once")
    tokenizer = load_tokenizer(ref)
    prompts, items = [], []
    for idx, sample in enumerate(samples):
        demos = select_demonstrations(pool, sample, prompt_cfg.n_shot, prompt_cfg.demonstrations)
        prompt = render_prompt(prompt_cfg, sample, demos, tokenizer)
        ids = np.asarray(tokenizer(prompt.text, add_special_tokens=prompt.add_special_tokens)["input_ids"], dtype=np.int32)
        indices = [resolve_position(p, len(ids), sample.id) for p in cfg.token_positions]
        prompts.append(prompt)
        items.append(Item(idx, ids, indices))
    timings = {"prepare_s": time.perf_counter() - start}
    return Prepared(cfg, prompt_cfg, ref, model_config, tokenizer, layers, samples, prompts, items, timings)


def _versions() -> dict[str, str]:
    return {
        "taskvec": taskvec.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def _resolved_config(prep: Prepared) -> dict[str, Any]:
    cfg = prep.config.model_dump(mode="json")
    cfg["model"] = prep.model_ref.spec
    cfg["prompt_config"] = prep.prompt_config.model_dump(mode="json")  # inlined: this file re-runs as it is
    return cfg


def _write_prompts(paths: SessionPaths, prep: Prepared) -> None:
    lines = [
        json.dumps(
            {
                "sample_idx": item.idx,
                "sample_id": prompt.sample_id,
                "prompt": prompt.text,
                "n_tokens": len(item.ids),
                "add_special_tokens": prompt.add_special_tokens,
                "demo_ids": list(prompt.demo_ids),
            },
            ensure_ascii=False,
        )
        for prompt, item in zip(prep.prompts, prep.items)
    ]
    save_text(paths.task_vector_dir / "prompts.jsonl", "\n".join(lines) + "\n")


def _metadata(prep: Prepared, paths: SessionPaths, device: torch.device, dtype: torch.dtype, extra: dict[str, Any]) -> dict[str, Any]:
    cfg = prep.config
    return {
        "session_name": paths.name,
        "status": "complete",
        "model": prep.model_ref.spec,
        "model_source": prep.model_ref.source,
        "gguf_file": prep.model_ref.gguf_file,
        "model_short": prep.model_ref.short_name,
        "n_model_layers": _text_config(prep.model_config).num_hidden_layers,
        "hidden_size": _text_config(prep.model_config).hidden_size,
        "layer_convention": "block_output",
        "layers": prep.layers,
        "layers_as_written": cfg.layers,
        "token_positions": cfg.token_positions,
        "keys": [k for row in prep.keys for k in row],
        "prompt_type": prep.prompt_config.prompt_type,
        "n_shot": prep.prompt_config.n_shot,
        "prompt_config": "inline" if isinstance(cfg.prompt_config, PromptConfig) else str(cfg.prompt_config),
        "dataset": prep.prompt_config.dataset.model_dump(mode="json"),
        "split": cfg.split,
        "n_samples": len(prep.items),
        "sample_ids": [s.id for s in prep.samples],
        "use_chat_template": prep.prompt_config.use_chat_template,
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(device),
        "seed": cfg.seed,
        "created_at": datetime.now().isoformat(timespec="seconds"),
        "versions": _versions(),
        **extra,
    }


def run_extraction(prep: Prepared, progress: bool = True) -> SessionPaths:
    """Load the weights, run every prompt, write the session; returns its paths."""
    cfg = prep.config
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    model = load_model(prep.model_ref, dtype, device)  # before the session exists: a load error writes nothing
    t1 = time.perf_counter()
    batching = cfg.batching if cfg.batching != "auto" else "padded" if device.type == "cuda" else "packed"
    if batching == "packed" and _sliding_window(prep.model_config):
        batching = "padded"  # the packed mask is full-causal; sliding-window attention needs the model's own mask
    budget = cfg.max_batch_tokens or DEFAULT_BATCH_TOKENS[batching]
    engine = Extractor(model, prep.layers, budget, cfg.batch_size, cfg.prefix_cache == "auto", batching == "packed")
    name = session_name(cfg.tag, prep.prompt_config.prompt_type, prep.prompt_config.n_shot, cfg.split, prep.model_ref.short_name, datetime.now())
    paths = create_session(cfg.output_dir, name)
    save_yaml(paths.task_vector_dir / "config.yaml", _resolved_config(prep))
    _write_prompts(paths, prep)
    tree = engine.plan(prep.items)
    writer = SessionWriter(paths, prep.layers, prep.keys, _text_config(prep.model_config).hidden_size)
    try:
        with tqdm(total=len(prep.items), unit="sample", disable=not progress, desc="extract") as bar:
            for batch in engine.run(prep.items, tree):
                items = [prep.items[idx] for idx in batch.idxs]  # an item's idx is its position
                writer.add(items, [prep.samples[it.idx].id for it in items], batch.vectors)
                bar.update(len(batch.idxs))
    finally:
        writer.close()
    t2 = time.perf_counter()
    writer.write_task_vectors()
    lengths = [len(it.ids) for it in prep.items]
    extra = {
        "add_special_tokens": prep.prompts[0].add_special_tokens if prep.prompts else None,
        "engine": {
            "prefix_cache": cfg.prefix_cache,
            "prefix_nodes": [{"prefix_len": n.prefix_len, "n_samples": len(n.members)} for n in tree.walk()],
            "batching": batching,
            "max_batch_tokens": budget,
            "batch_size": cfg.batch_size,
            "tokens_total": sum(lengths),
            "tokens_computed": tree.tokens_computed(lengths),
        },
        "timings": {**prep.timings, "load_model_s": t1 - t0, "extract_s": t2 - t1, "samples_per_s": len(prep.items) / max(t2 - t1, 1e-9)},
    }
    save_json(paths.task_vector_dir / "metadata.json", _metadata(prep, paths, device, dtype, extra))
    return paths


def extract(config_path: Path, progress: bool = True) -> SessionPaths:
    """Validate and prepare (writing nothing on error), then run and write the session."""
    return run_extraction(prepare(config_path), progress)
