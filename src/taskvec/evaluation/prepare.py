"""Everything an evaluation needs except the weights, checked and tokenised; building it writes
nothing (errors are one-line `TaskvecError`s)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from taskvec.data import sample_kinds
from taskvec.data.base import Sample
from taskvec.errors import TaskvecError
from taskvec.evaluation.options import EvalOptions, parse_options
from taskvec.extraction.prepare import Prepared
from taskvec.model.loading import ModelRef, load_tokenizer, resolve_device, resolve_model
from taskvec.prompts.build import build_prompts, select_samples, warn_if_short
from taskvec.prompts.config import PromptConfig, load_prompt_config
from taskvec.prompts.render import RenderedPrompt
from taskvec.session.directories import check_writable


@dataclass
class EvalPrepared:
    """Everything an evaluation needs except the weights; building it writes nothing."""

    config_path: Path
    options: EvalOptions
    prompt_config: PromptConfig
    model_ref: ModelRef
    tokenizer: PreTrainedTokenizerBase
    samples: list[Sample]
    prompts: list[RenderedPrompt]
    ids: list[list[int]]
    timings: dict[str, float] = field(default_factory=dict)
    # one pass: also write this extraction session from the prefill
    extraction: Prepared | None = None
    # sample_id -> question kind, where the data has kinds
    kinds: dict[str, str] = field(default_factory=dict)


def prepare_evaluation(config_path: Path, **overrides: Any) -> EvalPrepared:
    """Validate the prompt config and `overrides` (see `EvalOptions`), load data, render and
    tokenise prompts."""
    start = time.perf_counter()
    options = parse_options(overrides)
    if not config_path.is_file():
        raise TaskvecError(
            f"--config: file '{config_path}' not found; pass a prompt config YAML (shipped ones "
            "live under configs/{model_family}/)"
        )
    prompt_cfg = load_prompt_config(config_path)
    if options.model:
        prompt_cfg = prompt_cfg.model_copy(update={"model": options.model})
    if prompt_cfg.model is None:
        raise TaskvecError(
            "model: the prompt config names no model; add `model:` to it or pass --model"
        )
    check_writable(options.output_dir)
    resolve_device(options.device)
    samples, pool = select_samples(
        prompt_cfg, options.split, options.max_samples, config_path.parent
    )
    warn_if_short(options.max_samples, samples, options.split)
    ref = resolve_model(prompt_cfg.model)
    tokenizer = load_tokenizer(ref)
    prompts, ids = map(list, zip(*build_prompts(prompt_cfg, samples, pool, tokenizer)))
    timings = {"prepare_s": time.perf_counter() - start}
    kinds = sample_kinds(prompt_cfg.dataset, options.split)
    return EvalPrepared(
        config_path,
        options,
        prompt_cfg,
        ref,
        tokenizer,
        samples,
        prompts,
        ids,
        timings,
        kinds=kinds,
    )
