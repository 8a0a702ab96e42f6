"""Evaluation end to end: the prompts extraction reads, generated answers, parsed and scored.

`prepare_evaluation` validates everything and renders every prompt before any weights load
(errors are one-line `TaskvecError`s and nothing is written); `run_evaluation` generates
in length-sorted, left-padded batches and writes a results directory.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from tqdm import tqdm
from transformers import (
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.utils import logging as hf_logging

from taskvec.config import Device, DType, check_tag
from taskvec.data import sample_kinds
from taskvec.data.base import Sample
from taskvec.errors import Interrupted, TaskvecError, sigterm_as_interrupt
from taskvec.evaluation.answers import extract_answer, score, score_text
from taskvec.evaluation.joint import SessionSink, prepare_extraction
from taskvec.evaluation.predictions import PredictionLog, log_path, merge, read_all
from taskvec.evaluation.progress import Progress, Work
from taskvec.evaluation.ranks import combined, rank_report, shard
from taskvec.evaluation.record import timings, write_metrics
from taskvec.extraction.distributed import World, joined_world
from taskvec.extraction.prepare import Prepared
from taskvec.model import prefill
from taskvec.model.generation import Finished, GenerationStats, Generator
from taskvec.model.loading import (
    ModelRef,
    load_model,
    load_tokenizer,
    resolve_device,
    resolve_dtype,
    resolve_model,
)
from taskvec.prompts.build import build_prompts, select_samples, warn_if_short
from taskvec.prompts.config import Generation, PromptConfig, load_prompt_config
from taskvec.prompts.render import RenderedPrompt
from taskvec.session.layout import session_name
from taskvec.session.resume import config_differences
from taskvec.session.store import check_writable, create_unique_dir, save_text
from taskvec.validation import describe_validation_error


class EvalOptions(BaseModel):
    """Run settings that are not part of the prompt config (the CLI's overrides)."""

    model_config = ConfigDict(extra="forbid")
    split: str = "test"
    max_samples: int | None = Field(None, ge=1, description="the first N samples of the split")
    batch_size: int = Field(32, ge=1, description="rows decoding at once")
    model: str | None = Field(None, description="overrides the prompt config's model")
    output_dir: Path = Path("results")
    device: Device = "auto"
    dtype: DType = "auto"
    seed: int = Field(0, description="sampling seed (matters only with generation.do_sample)")
    prefix_cache: bool = Field(
        True, description="prefill shared prompt prefixes once (off: every prompt in full)"
    )
    device_map: Literal["auto"] | None = Field(
        None, description="auto: accelerate spreads the model's blocks over the node's devices"
    )
    tag: Annotated[str | None, AfterValidator(check_tag)] = Field(
        None,
        description="starts the results directory's name "
        "(default {prompt_type}_{n_shot}shot_{split})",
    )
    draft_tokens: int = Field(
        8,
        ge=0,
        description="greedy: prompt-lookup drafts a row checks per step while the batch has room (0: none)",
    )


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
    extraction: Prepared | None = (
        None  # one pass: also write this extraction session from the prefill
    )
    kinds: dict[str, str] = field(
        default_factory=dict
    )  # sample_id -> question kind, where the data has kinds


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
    """Validate the prompt config and `overrides` (see `EvalOptions`), load data, render and
    tokenise prompts."""
    start = time.perf_counter()
    options = _options(overrides)
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


_WORD = r"[^\W_](?:[\w'-]|\.(?=\w))*"  # "walked", "don't", "U.S", "12.5"
_TEXT_ANSWER = rf"[\"'*]*{_WORD}(?:\s+{_WORD}){{0,3}}[\"'*]*"  # one to four words, maybe quoted


def answer_stop_pattern(
    answer_format: str, answer_type: Literal["number", "text"] = "number"
) -> re.Pattern[str] | None:
    """A regex for a finished answer sentence, built from the text around `{answer}` in `answer_format`.

    number: a number that may carry a sign, currency, '%' and up to two words ("million
    dollars"), then a full stop followed by a space or newline ("The answer is 12.5. "), since
    a bare full stop may still be a decimal point. text: one to four words, then the closing
    punctuation written after `{answer}` ("The answer is walked."), or a newline if none is
    (a full stop after a digit, as in "12.", waits for a space or newline too). None when
    `answer_format` starts with `{answer}`.
    """
    lead, _, tail = answer_format.partition("{answer}")
    if not lead.strip():
        return None
    phrase = r"\s+".join(re.escape(word) for word in lead.split()) + r"\s*:?\s*"
    if answer_type == "text":
        close = (
            re.escape(tail.strip()) or r"\n"
        ) + r"(?:(?<!\d\.)|\s)"  # "12." may go on to "12.5"
        return re.compile(phrase + _TEXT_ANSWER + r"\s*" + close, re.IGNORECASE)
    number = r"[-+\u2212(]?[$€£]?\s?\d[\d,]*(?:\.\d+)?\)?\s?%?"
    return re.compile(phrase + number + r"(?:\s+[^\W\d_]+){0,2}\s*(?:\.\s|\n)", re.IGNORECASE)


def stop_pattern(answer_format: str, samples: list[Sample]) -> re.Pattern[str] | None:
    """The answer-sentence stop for these samples: the text pattern when every gold answer is text."""
    return answer_stop_pattern(
        answer_format, "text" if all(s.answer is None for s in samples) else "number"
    )


class _AnswerStop(StoppingCriteria):
    """Finishes each row once its new text holds a complete answer sentence, and records where."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        pattern: re.Pattern[str],
        prompt_len: int,
        rows: int,
    ) -> None:
        self.tokenizer = tokenizer
        self.pattern = pattern
        self.prompt_len = prompt_len
        self.stopped_at: list[int | None] = [None] * rows

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        new = input_ids[:, self.prompt_len :].tolist()
        for row, ids in enumerate(new):
            if self.stopped_at[row] is None and self.pattern.search(
                str(self.tokenizer.decode(ids, skip_special_tokens=True))
            ):
                self.stopped_at[row] = len(ids)
        return torch.tensor([s is not None for s in self.stopped_at], device=input_ids.device)  # type: ignore[return-value]


def eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """End-of-turn tokens: the tokenizer's eos plus any the model's own generation config lists."""
    found = [tokenizer.eos_token_id, model.generation_config.eos_token_id]
    flat = [i for x in found for i in (x if isinstance(x, list) else [x]) if i is not None]
    return list(dict.fromkeys(flat))


def generation_config(settings: Generation, pad_id: int, eos_ids: list[int]) -> GenerationConfig:
    """Exactly the prompt config's decoding settings; no top-k or repetition penalty from model defaults."""
    sampling = (
        {"temperature": settings.temperature, "top_p": settings.top_p, "top_k": 0}
        if settings.do_sample
        else {}
    )
    return GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        do_sample=settings.do_sample,
        repetition_penalty=1.0,
        pad_token_id=pad_id,
        eos_token_id=eos_ids,
        **sampling,
    )


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[list[int]],
    settings: Generation,
    batch_size: int,
    stop: re.Pattern[str] | None = None,
    progress: bool = False,
    prefix_cache: bool = True,
    seed: int = 0,
) -> list[list[int]]:
    """Generated token ids per prompt, in input order, up to and including eos or the `stop` match.

    Shared prompt prefixes are prefilled once and rows finish independently (see
    `taskvec.model.generation.Generator`); greedy output equals `model.generate` at batch size 1.
    """
    generator = Generator(
        model, settings, eos_ids(model, tokenizer), batch_size, tokenizer, stop, prefix_cache, seed
    )
    outputs: list[list[int]] = [[] for _ in prompt_ids]
    with tqdm(total=len(prompt_ids), unit="sample", disable=not progress, desc="generate") as bar:
        for done in generator.run(prompt_ids):
            outputs[done.idx] = done.tokens
            bar.update(1)
    return outputs


def generate_padded(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[list[int]],
    settings: Generation,
    batch_size: int,
    stop: re.Pattern[str] | None = None,
    progress: bool = False,
) -> list[list[int]]:
    """The previous code path (the benchmark's `hf_generate_bs16`): `model.generate` on whole prompts.

    Same output contract as `generate`. Prompts run longest first in left-padded batches with an
    attention mask, so (up to floating-point noise) a prompt's greedy output does not depend on the
    batch it lands in. It runs with `generation_config(settings)`; the model's own generation config
    is left as it is.
    """
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    eos = eos_ids(model, tokenizer)
    config = generation_config(settings, pad_id, eos)
    device = next(model.parameters()).device
    order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
    outputs: list[list[int]] = [[] for _ in prompt_ids]
    with tqdm(total=len(order), unit="sample", disable=not progress, desc="generate") as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(prompt_ids[i]) for i in batch)
            input_ids = torch.tensor(
                [[pad_id] * (width - len(prompt_ids[i])) + prompt_ids[i] for i in batch],
                device=device,
            )
            mask = torch.tensor(
                [[0] * (width - len(prompt_ids[i])) + [1] * len(prompt_ids[i]) for i in batch],
                device=device,
            )
            stopper = _AnswerStop(tokenizer, stop, width, len(batch)) if stop is not None else None
            criteria = StoppingCriteriaList([stopper] if stopper is not None else [])
            with torch.inference_mode():
                out = model.generate(
                    input_ids=input_ids,
                    attention_mask=mask,
                    generation_config=config,  # type: ignore[operator]
                    stopping_criteria=criteria,
                )
            for row, idx in enumerate(batch):
                new = out[row, width:].tolist()
                ends = [new.index(e) + 1 for e in eos if e in new]
                if stopper is not None and stopper.stopped_at[row] is not None:
                    ends.append(stopper.stopped_at[row])
                outputs[idx] = new[: min(ends, default=len(new))]
            bar.update(len(batch))
    return outputs


def _rerun_header(prep: EvalPrepared) -> str:
    """A comment for config.yaml giving the command that re-runs this evaluation."""
    o = prep.options
    args = f"--split {o.split} --batch-size {o.batch_size}" + (
        f" --max-samples {o.max_samples}" if o.max_samples else ""
    )
    return (
        "# Resolved prompt config of an evaluation; "
        f"re-run with: python run.py --config config.yaml {args}\n"
    )


def _prediction(
    idx: int,
    sample: Sample,
    prompt: RenderedPrompt,
    n_prompt: int,
    tokenizer: PreTrainedTokenizerBase,
    new: list[int],
    case_sensitive: bool = True,
) -> dict[str, Any]:
    """One line of predictions.jsonl: the generation, its parsed answer and whether it is correct.

    Numeric gold answers are parsed and scored by `answers.score`; text answers (`answer`
    None) by exact match after `answers.normalise_text` (`parse_method` "text").
    """
    generation = str(tokenizer.decode(new, skip_special_tokens=True))
    parsed_value: float | str | None
    if sample.answer is None:
        text, correct = score_text(generation, sample.answer_text, case_sensitive)
        parsed_value, parsed_text, how = text, text, "text" if text is not None else None
    else:
        parsed = extract_answer(generation)
        parsed_value, parsed_text, how = (
            (parsed.value, parsed.text, parsed.how) if parsed else (None, None, None)
        )
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


def score_prediction(
    idx: int, prep: EvalPrepared, done: Finished, stop: re.Pattern[str] | None
) -> dict[str, Any]:
    """The prediction line of a finished sample; output cut off by max_new_tokens before its answer
    sentence is `truncated` and counts as wrong (the fallback's reading is kept for inspection)."""
    row = _prediction(
        idx,
        prep.samples[idx],
        prep.prompts[idx],
        len(prep.ids[idx]),
        prep.tokenizer,
        done.tokens,
        prep.prompt_config.dataset.case_sensitive,
    )
    truncated = stop is not None and done.reason == "length"
    row.update(
        finish_reason=done.reason, truncated=truncated, correct_if_not_truncated=row["correct"]
    )
    if truncated:
        row["correct"] = False
    if prep.kinds:
        row["kind"] = prep.kinds.get(row["sample_id"])
    return row


@contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    """With `quiet`, nothing from loading reaches the terminal (transformers' logs and its GGUF
    progress bar)."""
    if not quiet:
        yield
        return
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with open(os.devnull, "w") as sink, redirect_stderr(sink):
            yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def _generate_rows(
    prep: EvalPrepared,
    model: PreTrainedModel,
    log: PredictionLog,
    rows: dict[int, dict[str, Any]],
    skip: set[int],
    stop: re.Pattern[str] | None,
    progress: bool,
    sink: SessionSink | None,
) -> GenerationStats:
    """Generate every sample not in `skip`, appending each prediction to the log as it finishes
    (and, with a `sink`, its prefill's hidden states to the extraction session)."""
    o = prep.options
    generator = Generator(
        model,
        prep.prompt_config.generation,
        eos_ids(model, prep.tokenizer),
        o.batch_size,
        prep.tokenizer,
        stop,
        o.prefix_cache,
        o.seed,
        reading=sink.reading if sink else None,
        draft_tokens=o.draft_tokens,
    )
    todo = [ids for i, ids in enumerate(prep.ids) if i not in skip]
    plan = prefill.plan(todo, o.prefix_cache).tokens_computed([len(ids) for ids in todo])
    bar = Progress(Work(plan, len(todo), prep.prompt_config.generation.max_new_tokens), progress)
    try:
        for done in generator.run(prep.ids, skip=skip, on_step=bar.step):
            row = rows[done.idx] = score_prediction(done.idx, prep, done, stop)
            try:
                log.append(row)
            except Exception:
                del rows[done.idx]  # not on disk
                raise
            if sink is not None and done.vectors is not None:
                sink.add(done.idx, done.vectors)
            bar.finish(len(done.tokens), generator.stats)
    finally:
        bar.close()
    return generator.stats


def _new_results(prep: EvalPrepared) -> Path:
    cfg, o = prep.prompt_config, prep.options
    name = session_name(
        o.tag,
        cfg.prompt_type,
        cfg.n_shot,
        o.split,
        prep.model_ref.short_name,
        datetime.now(),
        kind="results",
    )
    directory = create_unique_dir(o.output_dir, name)
    resolved = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    save_text(directory / "config.yaml", _rerun_header(prep) + resolved)
    return directory


def run_evaluation(
    prep: EvalPrepared, progress: bool = True, resume: Path | None = None
) -> EvalResult:
    """Load the weights, generate for every prompt, parse, score and write the results directory.

    Each prediction is appended to predictions.jsonl as its sample finishes. A run that
    stops early records `interrupted` (or `failed`) in metrics.json and raises a one-line
    TaskvecError with the resume command; with `resume` (a results directory) the samples
    already there are kept and the rest generated, giving the file an uninterrupted run writes.
    Under torchrun each rank generates its shard of the prompts (`ranks`) into its own part of
    the one results directory, and rank 0 merges them and computes the metrics.
    """
    with joined_world(resolve_device(prep.options.device), prep.options.device_map) as (
        world,
        device,
    ):
        return _run(prep, progress, resume, world, device)


def _run(
    prep: EvalPrepared, progress: bool, resume: Path | None, world: World, device: torch.device
) -> EvalResult:
    o = prep.options
    dtype = resolve_dtype(o.dtype, device)
    # checked before the weights load; rank 0 merges the parts a stopped run left
    rows, runs = (
        world.on_main(lambda: _resume_state(prep, resume)) if resume is not None else ({}, [])
    )
    torch.manual_seed(o.seed)
    t0 = time.perf_counter()
    # before the directory exists: a load error writes nothing
    with _quiet(not (progress and world.main)):
        model = load_model(prep.model_ref, dtype, device, o.device_map)
    t1 = time.perf_counter()
    directory = resume if resume is not None else world.on_main(lambda: _new_results(prep))
    sink = SessionSink(prep.extraction, device, dtype, world) if prep.extraction else None
    stop = stop_pattern(prep.prompt_config.answer_format, prep.samples)
    max_new = prep.prompt_config.generation.max_new_tokens
    part = shard(prep.ids, set(rows), world, o.prefix_cache, max_new)
    run: dict[str, Any] = {
        "started_at": datetime.now().isoformat(timespec="seconds"),
        "n_kept": len(rows),
        "world_size": world.size,
    }
    runs = [*runs, run]

    def record(status: str, done: dict[int, dict[str, Any]]) -> dict[str, Any]:
        return write_metrics(prep, directory, status, done, runs, device, dtype, stop, sink)

    if world.main:
        record("running", rows)
    log, n_kept = PredictionLog(log_path(directory, world.rank)), len(rows)
    try:
        with sigterm_as_interrupt():
            bar = progress and world.main
            stats = _generate_rows(prep, model, log, rows, part.skip, stop, bar, sink)
            log.close()
            if sink is not None:
                sink.finish_files()
            mine = rank_report(world, part, len(rows) - n_kept, stats, time.perf_counter() - t1)
            reports = world.gather(mine)  # also waits until every rank's predictions are written
    except BaseException as exc:
        log.close()
        if sink is not None:
            _close_quietly(
                sink, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", directory
            )
        done = read_all(directory, repair=False) if world.main else rows
        stopped = partial(record, done=done) if world.main else None
        raise _stopped(exc, stopped, directory, log.path, len(done), len(prep.ids)) from exc
    metrics: dict[str, Any] = {}  # rank 0 writes them; every rank returns them
    if world.main:
        stats, wall = combined(reports)
        run["timings"] = timings(prep, stats, t1 - t0, wall, len(prep.ids) - n_kept)
        run["ranks"] = reports
        metrics = _complete(directory, sink, partial(record, "complete"))
    elif sink is not None:
        sink.close("complete", directory)
    return EvalResult(directory, world.broadcast(metrics))


def _complete(
    directory: Path,
    sink: SessionSink | None,
    record: Callable[[dict[int, dict[str, Any]]], dict[str, Any]],
) -> dict[str, Any]:
    """Rank 0, once every rank is done: every rank's predictions in one file in sample order,
    the one-pass session's task vectors, metrics.json."""
    everything = read_all(directory)
    merge(directory, everything)
    if sink is not None:
        sink.close("complete", directory)
    return record(everything)


def _close_quietly(sink: SessionSink, status: str, directory: Path) -> None:
    """Record an unfinished extraction session; the evaluation's own error is the one reported."""
    try:
        sink.close(status, directory)
    except Exception:  # noqa: BLE001
        pass


def _stopped(
    exc: BaseException,
    record: Callable[[str], Any] | None,
    directory: Path,
    log: Path,
    done: int,
    total: int,
) -> TaskvecError:
    """Record how the run ended (rank 0: `record`) and the one-line error saying how to resume;
    a rank other than 0 (`record` None) names its own part and its own predictions."""
    kept = f"{done} of {total} predictions are saved in {log}"
    hint = f"taskvec evaluate --resume {directory}"
    status = "interrupted" if isinstance(exc, (KeyboardInterrupt, OSError)) else "failed"
    try:
        if record is not None:
            record(status)
    except OSError:
        pass  # a full disk may refuse even this; predictions.jsonl still says what is done
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted(f"interrupted; {kept}; resume with: {hint}")
    if isinstance(exc, TaskvecError):
        return TaskvecError(f"{exc}; {kept}")
    return TaskvecError(
        f"the run failed ({exc.__class__.__name__}: {exc}); {kept}; resume with: {hint}"
    )


def _resume_state(
    prep: EvalPrepared, directory: Path
) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    """The sound predictions of `directory` and its earlier runs, after checking it was made by
    this config."""
    metrics_path = directory / "metrics.json"
    if not metrics_path.is_file() or not (directory / "config.yaml").is_file():
        raise TaskvecError(
            f"--resume: '{directory}' is not an evaluation results directory (no metrics.json or config.yaml)"
        )
    saved = json.loads(metrics_path.read_text())
    if saved.get("status") == "complete":
        raise TaskvecError(f"--resume: '{directory}' is already complete; nothing to resume")
    now = {
        **prep.options.model_dump(mode="json"),
        "prompt_config": prep.prompt_config.model_dump(mode="json"),
    }
    then = {k: v for k, v in saved.get("config", {}).items() if k != "config_path"}
    diffs = config_differences(then, now)
    if diffs:
        raise TaskvecError(
            f"--resume: the config differs from '{directory.name}' in {len(diffs)} field(s): "
            f"{'; '.join(diffs[:5])}; resume with its own config (taskvec evaluate --resume {directory})"
        )
    rows = read_all(directory)
    merge(directory, rows)  # a distributed run's parts in one file, so any world size goes on
    for idx, row in rows.items():
        if idx >= len(prep.samples) or (row.get("sample_id"), row.get("prompt")) != (
            prep.samples[idx].id,
            prep.prompts[idx].text,
        ):
            raise TaskvecError(
                f"--resume: prediction for sample {idx} ('{row.get('sample_id')}') does not match this "
                "config's prompt; the dataset or tokenizer changed since, so start a new evaluation"
            )
    return rows, list(saved.get("runs", []))


def saved_options(directory: Path) -> dict[str, Any]:
    """The options (`EvalOptions` fields) a results directory was made with, from its metrics.json."""
    path = directory / "metrics.json"
    if not path.is_file():
        raise TaskvecError(
            f"--resume: '{directory}' is not an evaluation results directory (no metrics.json); "
            "pass the directory `taskvec evaluate` printed"
        )
    config = json.loads(path.read_text()).get("config", {})
    return {k: v for k, v in config.items() if k in EvalOptions.model_fields}


def evaluate(
    config_path: Path | None = None,
    progress: bool = True,
    resume: Path | None = None,
    extract: Path | None = None,
    **overrides: Any,
) -> EvalResult:
    """Validate and prepare (writing nothing on error), then generate, score and write the results.

    With `resume` (a results directory), continue it: its own config.yaml and options are
    used unless `config_path` / `overrides` are given, which must then agree with them.
    With `extract` (an extraction config for the same prompts), the same prefill also writes
    that extraction session; it and the results directory record each other.
    """
    if resume is not None and extract is not None:
        raise TaskvecError(
            "--extract: cannot be combined with --resume; run `taskvec extract --config ... "
            "--resume SESSION` for the session"
        )
    if resume is not None:
        overrides = {
            **saved_options(resume),
            "output_dir": resume.parent,
            **{k: v for k, v in overrides.items() if v is not None},
        }
        config_path = config_path or resume / "config.yaml"
    if config_path is None:
        raise TaskvecError(
            "--config: pass a prompt config YAML, or --resume RESULTS_DIR to continue an evaluation"
        )
    prep = prepare_evaluation(config_path, **overrides)
    if extract is not None:
        prep.extraction = prepare_extraction(extract, prep)
    return run_evaluation(prep, progress, resume)
