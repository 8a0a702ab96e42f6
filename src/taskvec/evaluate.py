"""Evaluation end to end: the prompts extraction reads, generated answers, parsed and scored.

`prepare_evaluation` validates everything and renders every prompt before any weights load
(errors are one-line `TaskvecError`s and nothing is written); `run_evaluation` generates
in length-sorted, left-padded batches and writes a results directory.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm import tqdm
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList

from taskvec.answers import extract_answer, score, score_text
from taskvec.config import Device, DType
from taskvec.data.base import Sample
from taskvec.errors import TaskvecError
from taskvec.layout import session_name
from taskvec.models import ModelRef, load_model, load_tokenizer, resolve_device, resolve_dtype, resolve_model
from taskvec.prompts.build import build_prompts, select_samples
from taskvec.prompts.config import Generation, PromptConfig, load_prompt_config
from taskvec.prompts.render import RenderedPrompt
from taskvec.store import check_writable, create_unique_dir, save_json, save_text
from taskvec.validation import describe_validation_error
from taskvec.versions import package_versions


class EvalOptions(BaseModel):
    """Run settings that are not part of the prompt config (the CLI's overrides)."""

    model_config = ConfigDict(extra="forbid")
    split: str = "test"
    max_samples: int | None = Field(None, ge=1, description="the first N samples of the split")
    batch_size: int = Field(16, ge=1)
    model: str | None = Field(None, description="overrides the prompt config's model")
    output_dir: Path = Path("results")
    device: Device = "auto"
    dtype: DType = "auto"
    seed: int = Field(0, description="torch seed (matters only with generation.do_sample)")


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


@dataclass(frozen=True)
class EvalResult:
    """Where the results went and what `metrics.json` says."""

    directory: Path
    metrics: dict[str, Any]


def _options(overrides: dict[str, Any]) -> EvalOptions:
    try:
        return EvalOptions.model_validate({k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise TaskvecError(describe_validation_error(exc, "evaluate", EvalOptions)) from exc


def prepare_evaluation(config_path: Path, **overrides: Any) -> EvalPrepared:
    """Validate the prompt config and `overrides` (see `EvalOptions`), load data, render and tokenise prompts."""
    start = time.perf_counter()
    options = _options(overrides)
    if not config_path.is_file():
        raise TaskvecError(
            f"--config: file '{config_path}' not found; pass a prompt config YAML (shipped ones live under configs/{{model_family}}/)"
        )
    prompt_cfg = load_prompt_config(config_path)
    if options.model:
        prompt_cfg = prompt_cfg.model_copy(update={"model": options.model})
    if prompt_cfg.model is None:
        raise TaskvecError("model: the prompt config names no model; add `model:` to it or pass --model")
    check_writable(options.output_dir)
    resolve_device(options.device)
    samples, pool = select_samples(prompt_cfg, options.split, options.max_samples, config_path.parent)
    ref = resolve_model(prompt_cfg.model)
    tokenizer = load_tokenizer(ref)
    prompts, ids = map(list, zip(*build_prompts(prompt_cfg, samples, pool, tokenizer)))
    timings = {"prepare_s": time.perf_counter() - start}
    return EvalPrepared(config_path, options, prompt_cfg, ref, tokenizer, samples, prompts, ids, timings)


def answer_stop_pattern(answer_format: str) -> re.Pattern[str] | None:
    """A regex for a finished answer sentence ("The answer is 12.5." then a space or newline).

    Built from the text before `{answer}` in `answer_format`; the number may carry a sign,
    currency, '%' and up to two words ("million dollars") before the full stop. None when
    `answer_format` starts with `{answer}`.
    """
    lead = answer_format.split("{answer}")[0].strip()
    if not lead:
        return None
    phrase = r"\s+".join(re.escape(word) for word in lead.split())
    number = r"[-+\u2212(]?[$€£]?\s?\d[\d,]*(?:\.\d+)?\)?\s?%?"
    return re.compile(phrase + r"\s*:?\s*" + number + r"(?:\s+[^\W\d_]+){0,2}\s*(?:\.\s|\n)", re.IGNORECASE)


class _AnswerStop(StoppingCriteria):
    """Finishes each row once its new text holds a complete answer sentence, and records where."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, pattern: re.Pattern[str], prompt_len: int, rows: int) -> None:
        self.tokenizer = tokenizer
        self.pattern = pattern
        self.prompt_len = prompt_len
        self.stopped_at: list[int | None] = [None] * rows

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        new = input_ids[:, self.prompt_len :].tolist()
        for row, ids in enumerate(new):
            if self.stopped_at[row] is None and self.pattern.search(self.tokenizer.decode(ids, skip_special_tokens=True)):
                self.stopped_at[row] = len(ids)
        return torch.tensor([s is not None for s in self.stopped_at], device=input_ids.device)  # type: ignore[return-value]


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """End-of-turn tokens: the tokenizer's eos plus any the model's own generation config lists."""
    found = [tokenizer.eos_token_id, model.generation_config.eos_token_id]
    flat = [i for x in found for i in (x if isinstance(x, list) else [x]) if i is not None]
    return list(dict.fromkeys(flat))


def generation_config(settings: Generation, pad_id: int, eos_ids: list[int]) -> GenerationConfig:
    """Exactly the prompt config's decoding settings; no top-k or repetition penalty from model defaults."""
    sampling = {"temperature": settings.temperature, "top_p": settings.top_p, "top_k": 0} if settings.do_sample else {}
    return GenerationConfig(
        max_new_tokens=settings.max_new_tokens, do_sample=settings.do_sample, repetition_penalty=1.0,
        pad_token_id=pad_id, eos_token_id=eos_ids, **sampling,
    )


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[list[int]],
    settings: Generation,
    batch_size: int,
    stop: re.Pattern[str] | None = None,
    progress: bool = False,
) -> list[list[int]]:
    """Generated token ids per prompt, in input order, up to and including eos or the `stop` match.

    Prompts run longest first in left-padded batches with an attention mask, so (up to
    floating-point noise) a prompt's greedy output does not depend on the batch it lands
    in. The model's own generation config is replaced by `generation_config(settings)`.
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_ids = _eos_ids(model, tokenizer)
    model.generation_config = generation_config(settings, pad_id, eos_ids)
    device = next(model.parameters()).device
    order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
    outputs: list[list[int]] = [[] for _ in prompt_ids]
    with tqdm(total=len(order), unit="sample", disable=not progress, desc="generate") as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(prompt_ids[i]) for i in batch)
            input_ids = torch.tensor([[pad_id] * (width - len(prompt_ids[i])) + prompt_ids[i] for i in batch], device=device)
            mask = torch.tensor([[0] * (width - len(prompt_ids[i])) + [1] * len(prompt_ids[i]) for i in batch], device=device)
            stopper = _AnswerStop(tokenizer, stop, width, len(batch)) if stop is not None else None
            criteria = StoppingCriteriaList([stopper] if stopper is not None else [])
            with torch.inference_mode():
                out = model.generate(input_ids=input_ids, attention_mask=mask, stopping_criteria=criteria)
            for row, idx in enumerate(batch):
                new = out[row, width:].tolist()
                ends = [new.index(e) + 1 for e in eos_ids if e in new]
                if stopper is not None and stopper.stopped_at[row] is not None:
                    ends.append(stopper.stopped_at[row])  # type: ignore[arg-type]
                outputs[idx] = new[: min(ends, default=len(new))]
            bar.update(len(batch))
    return outputs


def _rerun_header(prep: EvalPrepared) -> str:
    """A comment for config.yaml giving the command that re-runs this evaluation."""
    o = prep.options
    args = f"--split {o.split} --batch-size {o.batch_size}" + (f" --max-samples {o.max_samples}" if o.max_samples else "")
    return f"# Resolved prompt config of an evaluation; re-run with: python run.py --config config.yaml {args}\n"


def _prediction(
    idx: int, sample: Sample, prompt: RenderedPrompt, n_prompt: int, tokenizer: PreTrainedTokenizerBase, new: list[int],
    case_sensitive: bool = True,
) -> dict[str, Any]:
    """One line of predictions.jsonl: the generation, its parsed answer and whether it is correct.

    Numeric gold answers are parsed and scored by `answers.score`; text answers (`answer`
    None) by exact match after `answers.normalise_text` (`parse_method` "text").
    """
    generation = tokenizer.decode(new, skip_special_tokens=True)
    if sample.answer is None:
        text, correct = score_text(generation, sample.answer_text, case_sensitive)
        parsed_value, parsed_text, how = text, text, "text" if text is not None else None
    else:
        parsed = extract_answer(generation)
        parsed_value, parsed_text, how = (parsed.value, parsed.text, parsed.how) if parsed else (None, None, None)
        correct = score(parsed, sample.answer, sample.answer_text)
    return {
        "sample_idx": idx,
        "sample_id": sample.id,
        "prompt": prompt.text,
        "generation": generation,
        "parsed_answer": parsed_value,
        "parsed_text": parsed_text,
        "parse_method": how,
        "gold": sample.answer if sample.answer is not None else sample.answer_text,
        "gold_text": sample.answer_text,
        "correct": correct,
        "n_prompt_tokens": n_prompt,
        "n_generated_tokens": len(new),
    }


def run_evaluation(prep: EvalPrepared, progress: bool = True) -> EvalResult:
    """Load the weights, generate for every prompt, parse, score and write the results directory."""
    o, cfg = prep.options, prep.prompt_config
    device = resolve_device(o.device)
    dtype = resolve_dtype(o.dtype, device)
    torch.manual_seed(o.seed)
    t0 = time.perf_counter()
    model = load_model(prep.model_ref, dtype, device)  # before the directory exists: a load error writes nothing
    t1 = time.perf_counter()
    name = session_name(None, cfg.prompt_type, cfg.n_shot, o.split, prep.model_ref.short_name, datetime.now(), kind="results")
    directory = create_unique_dir(o.output_dir, name)
    resolved = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    save_text(directory / "config.yaml", _rerun_header(prep) + resolved)
    stop = answer_stop_pattern(cfg.answer_format)
    t2 = time.perf_counter()
    generated = generate(model, prep.tokenizer, prep.ids, cfg.generation, o.batch_size, stop, progress)
    t3 = time.perf_counter()
    rows = [
        _prediction(i, s, p, len(ids), prep.tokenizer, new, cfg.dataset.case_sensitive)
        for i, (s, p, ids, new) in enumerate(zip(prep.samples, prep.prompts, prep.ids, generated))
    ]
    save_text(directory / "predictions.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    n_correct = sum(r["correct"] for r in rows)
    n_tokens = sum(r["n_generated_tokens"] for r in rows)
    metrics = {
        "session_name": directory.name,
        "status": "complete",
        "accuracy": n_correct / len(rows),
        "n_samples": len(rows),
        "n_correct": n_correct,
        "n_parse_failures": sum(r["parsed_answer"] is None for r in rows),
        "n_generated_tokens": n_tokens,
        "split": o.split,
        "model": prep.model_ref.spec,
        "model_short": prep.model_ref.short_name,
        "prompt_type": cfg.prompt_type,
        "n_shot": cfg.n_shot,
        "generation": {**cfg.generation.model_dump(mode="json"), "batch_size": o.batch_size, "stop_after_answer": stop is not None},
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(device),
        "timings": {
            **prep.timings,
            "load_model_s": t1 - t0,
            "generate_s": t3 - t2,
            "samples_per_s": len(rows) / max(t3 - t2, 1e-9),
            "tokens_per_s": n_tokens / max(t3 - t2, 1e-9),
        },
        "versions": package_versions(),
        "created_at": datetime.now().isoformat(timespec="seconds"),
        "config": {**o.model_dump(mode="json"), "config_path": str(prep.config_path), "prompt_config": cfg.model_dump(mode="json")},
    }
    save_json(directory / "metrics.json", metrics)
    return EvalResult(directory, metrics)


def evaluate(config_path: Path, progress: bool = True, **overrides: Any) -> EvalResult:
    """Validate and prepare (writing nothing on error), then generate, score and write the results."""
    return run_evaluation(prepare_evaluation(config_path, **overrides), progress)
