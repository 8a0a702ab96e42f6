"""What a patching run needs before any weights load: each task's token ids and the layers to sweep.

Per task: the few-shot prompts whose mean last-token state is the task vector, and the dev and
test queries, zero-shot (the prompts patched) and few-shot (the baseline), with their gold answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from taskvec.data.base import Sample
from taskvec.data.sources import source
from taskvec.errors import TaskvecError
from taskvec.model.loading import (
    ModelRef,
    load_model_config,
    load_tokenizer,
    resolve_device,
    resolve_model,
)
from taskvec.patching.config import PatchConfig, load_patch_config
from taskvec.positions import VectorKey, normalise_layer
from taskvec.prompts.build import build_prompts, select_samples
from taskvec.prompts.config import PromptConfig, load_prompt_config
from taskvec.prompts.render import start_token
from taskvec.session.directories import check_writable
from taskvec.session.reader import load_session


@dataclass(frozen=True)
class Queries:
    """One split's queries: zero-shot token ids (patched), few-shot ones (the baseline; empty
    without a few-shot config) and the gold answers, in the same order."""

    zero: list[list[int]]
    few: list[list[int]]
    gold: list[str]


@dataclass(frozen=True)
class TaskPrompts:
    """One task: the few-shot prompts averaged into its vector, dev and test queries, their
    sample ids, an example."""

    name: str
    vector_prompts: list[list[int]]
    dev: Queries
    test: Queries
    ids: dict[str, list[str]]
    case_sensitive: bool
    example: dict[str, str]


@dataclass
class PatchPrepared:
    """Everything validated and tokenised before any weights load."""

    config_path: Path
    config: PatchConfig
    model_ref: ModelRef
    tokenizer: PreTrainedTokenizerBase
    n_layers: int
    layers: list[int]
    tasks: list[TaskPrompts]
    session_vectors: dict[int, torch.Tensor] | None
    start_tokens: dict[str, dict[str, str | None]]  # zero_shot / few_shot: how the prompts begin


def _resolve(base: Path, path: Path) -> Path:
    return path if path.is_absolute() or path.exists() else base / path


def _prompt_config(
    base: Path, path: Path, field_name: str, task: str | None, model: str | None
) -> PromptConfig:
    full = _resolve(base, path)
    if not full.is_file():
        raise TaskvecError(
            f"{field_name}: file '{path}' not found; point it at a prompt config YAML (e.g. "
            "configs/smollm2-135m/short_plain_0shot.yaml)"
        )
    cfg = load_prompt_config(full)
    if task is not None:
        if not source(cfg.dataset.source).task_sets:
            raise TaskvecError(
                f"tasks: names builtin task sets but {field_name} uses dataset.source "
                f"'{cfg.dataset.source}'; remove `tasks`"
            )
        cfg = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"name": task})})
    if model is not None:
        cfg = cfg.model_copy(update={"model": model})
    return cfg


def _ids(
    cfg: PromptConfig, samples: list[Sample], pool: list[Sample], tokenizer: PreTrainedTokenizerBase
) -> list[list[int]]:
    return [ids for _, ids in build_prompts(cfg, samples, pool, tokenizer)]


def _normalise_layers(layers: list[int], n_layers: int) -> list[int]:
    """Each block once, non-negative, ascending."""
    return sorted({normalise_layer(layer, n_layers) for layer in layers})


def _task_prompts(
    cfg: PatchConfig, base: Path, task: str | None, tokenizer: PreTrainedTokenizerBase
) -> TaskPrompts:
    """One task's prompts; the dev split's first tv_max_samples build the vector, the next
    dev_max_samples are swept."""
    zero = _prompt_config(
        base, cfg.zero_shot_prompt_config, "zero_shot_prompt_config", task, cfg.model
    )
    few = (
        _prompt_config(base, cfg.fewshot_prompt_config, "fewshot_prompt_config", task, cfg.model)
        if cfg.fewshot_prompt_config
        else None
    )
    if few is not None and few.n_shot == 0:
        raise TaskvecError(
            "fewshot_prompt_config: its n_shot is 0; point it at a few-shot prompt config (n_shot >= 1)"
        )
    if zero.n_shot != 0:
        raise TaskvecError(
            f"zero_shot_prompt_config: its n_shot is {zero.n_shot}; point it at a zero-shot prompt config"
        )
    n_dev = cfg.tv_max_samples + cfg.dev_max_samples
    dev_zero_s, _ = select_samples(zero, cfg.dev_split, n_dev, base)
    if len(dev_zero_s) < n_dev:
        raise TaskvecError(
            f"dev_split: '{cfg.dev_split}' has {len(dev_zero_s)} samples, fewer than "
            f"tv_max_samples + dev_max_samples = {n_dev}; lower them or enlarge the split"
        )
    test_s, _ = select_samples(zero, cfg.test_split, cfg.test_max_samples, base)
    tv_s, dev_s = dev_zero_s[: cfg.tv_max_samples], dev_zero_s[cfg.tv_max_samples :]
    empty: list[list[int]] = []
    tv_ids, dev_few, test_few = empty, empty, empty
    if few is not None:
        _, pool = select_samples(few, cfg.dev_split, n_dev, base)
        tv_ids, dev_few = _ids(few, tv_s, pool, tokenizer), _ids(few, dev_s, pool, tokenizer)
        _, test_pool = select_samples(few, cfg.test_split, cfg.test_max_samples, base)
        test_few = _ids(few, test_s, test_pool, tokenizer)
    dev = Queries(_ids(zero, dev_s, [], tokenizer), dev_few, [s.answer_text for s in dev_s])
    test = Queries(_ids(zero, test_s, [], tokenizer), test_few, [s.answer_text for s in test_s])
    example = {"zero_shot": str(tokenizer.decode(test.zero[0]))}
    if test.few:
        example["few_shot"] = str(tokenizer.decode(test.few[0]))
    ids = {
        "vector": [s.id for s in tv_s],
        "dev": [s.id for s in dev_s],
        "test": [s.id for s in test_s],
    }
    _check_disjoint(ids, cfg)
    return TaskPrompts(
        name=task or zero.dataset.name or "default",
        vector_prompts=tv_ids,
        dev=dev,
        test=test,
        ids=ids,
        case_sensitive=zero.dataset.case_sensitive,
        example=example,
    )


def _check_disjoint(ids: dict[str, list[str]], cfg: PatchConfig) -> None:
    """Refuse vector, dev and test queries that share a sample id (the same row would be both
    learned from and scored)."""
    for a, b in (("vector", "test"), ("dev", "test"), ("vector", "dev")):
        shared = sorted(set(ids[a]) & set(ids[b]))
        if shared:
            raise TaskvecError(
                f"{a} and {b} queries share {len(shared)} sample id(s) (e.g. '{shared[0]}'; dev_split "
                f"'{cfg.dev_split}', test_split '{cfg.test_split}'); use disjoint splits (one file given as "
                "`path` alone is split into train and test)"
            )


def _session_vectors(
    spec: str, cfg: PatchConfig, n_layers: int, hidden: int
) -> dict[int, torch.Tensor]:
    """The `last`-position task vectors of session `spec`, at `cfg.layers` (default: every layer it has)."""
    session = load_session(spec, cfg.session_dir)
    available = [layer for layer in session.layers if str(VectorKey(layer, "last")) in session.keys]
    if not available:
        raise TaskvecError(
            f"task_vectors: session '{session.name}' has no `last` position vectors; extract with "
            "token_positions: [last]"
        )
    wanted = _normalise_layers(cfg.layers, n_layers) if cfg.layers is not None else available
    missing = [layer for layer in wanted if layer not in available]
    if missing:
        raise TaskvecError(
            f"layers: session '{session.name}' has no vectors for layer(s) {missing}; use some of "
            f"{available} or re-extract"
        )
    vectors = {layer: session.mean(str(VectorKey(layer, "last"))).float() for layer in wanted}
    if vectors[wanted[0]].numel() != hidden:
        raise TaskvecError(
            f"task_vectors: session '{session.name}' holds {vectors[wanted[0]].numel()}-dim "
            "vectors but the model's "
            f"hidden size is {hidden}; use a session extracted from the same model"
        )
    return vectors


def prepare_patching(config_path: Path) -> PatchPrepared:
    """Validate the patch config, both prompt configs, the splits and layers; render and tokenise
    every prompt (no weights)."""
    cfg = load_patch_config(config_path)
    base = config_path.parent
    check_writable(cfg.output_dir)
    resolve_device(cfg.device)
    # the model comes from the patch config or the zero-shot prompt config; resolve it first for the tokenizer
    zero = _prompt_config(
        base, cfg.zero_shot_prompt_config, "zero_shot_prompt_config", None, cfg.model
    )
    few = (
        _prompt_config(base, cfg.fewshot_prompt_config, "fewshot_prompt_config", None, cfg.model)
        if cfg.fewshot_prompt_config
        else None
    )
    model = zero.model or (few.model if few is not None else None)
    if model is None:
        raise TaskvecError(
            "model: neither the patch config nor the prompt configs name a model; add `model:`"
        )
    ref = resolve_model(model)
    model_cfg = load_model_config(ref).get_text_config()
    n_layers, hidden = int(model_cfg.num_hidden_layers), int(model_cfg.hidden_size)
    session_vectors = None
    if cfg.task_vectors is not None:
        session_vectors = _session_vectors(cfg.task_vectors, cfg, n_layers, hidden)
        layers = list(session_vectors)
    else:
        layers = (
            _normalise_layers(cfg.layers, n_layers)
            if cfg.layers is not None
            else list(range(n_layers))
        )
    tokenizer = load_tokenizer(ref)
    names: list[str | None] = list(cfg.tasks) if cfg.tasks else [None]
    tasks = [_task_prompts(cfg, base, task, tokenizer) for task in names]
    starts = {"zero_shot": start_token(zero, tokenizer).record()}
    if few is not None:
        starts["few_shot"] = start_token(few, tokenizer).record()
    return PatchPrepared(
        config_path, cfg, ref, tokenizer, n_layers, layers, tasks, session_vectors, starts
    )
