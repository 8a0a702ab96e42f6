"""Evaluation end to end: the prompts extraction reads, generated answers, parsed and scored.

`prepare_evaluation` (`prepare.py`) validates everything and renders every prompt before any
weights load; `run_evaluation` loads the weights, generates (`loop.py`) and writes a results
directory; `evaluate` does both, or continues a stopped run (`resume.py`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch
from transformers import PreTrainedModel

from taskvec.errors import TaskvecError, sigterm_as_interrupt
from taskvec.evaluation.ending import stopped_error
from taskvec.evaluation.joint import SessionSink, prepare_extraction
from taskvec.evaluation.loop import generate_rows
from taskvec.evaluation.predictions import PredictionLog, log_path, merge, read_all
from taskvec.evaluation.prepare import EvalPrepared, prepare_evaluation
from taskvec.evaluation.ranks import combined, rank_report, shard
from taskvec.evaluation.record import timings, write_metrics
from taskvec.evaluation.results import new_results
from taskvec.evaluation.resume import resume_state, saved_options
from taskvec.evaluation.stopping import stop_pattern
from taskvec.extraction.distributed import World, joined_world
from taskvec.model.loading import load_model, quiet_loading, resolve_device, resolve_dtype
from taskvec.schemas.metrics import Metrics


class Record(Protocol):
    """Writes metrics.json for the finished predictions `done`, the run ending as `status`."""

    def __call__(self, status: str, done: dict[int, dict[str, Any]]) -> Metrics: ...


@dataclass(frozen=True)
class EvalResult:
    """Where the results went and what `metrics.json` says."""

    directory: Path
    metrics: Metrics


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
        world.on_main(lambda: resume_state(prep, resume)) if resume is not None else ({}, [])
    )
    torch.manual_seed(o.seed)
    t0 = time.perf_counter()
    # before the directory exists: a load error writes nothing
    with quiet_loading(not (progress and world.main)):
        model = load_model(prep.model_ref, dtype, device, o.device_map)
    t1 = time.perf_counter()
    directory = resume if resume is not None else world.on_main(lambda: new_results(prep))
    sink = (
        SessionSink(prep.extraction, device, dtype, world, directory) if prep.extraction else None
    )
    stop = stop_pattern(prep.prompt_config.answer_format, prep.samples)
    run: dict[str, Any] = {
        "started_at": datetime.now().isoformat(timespec="seconds"),
        "n_kept": len(rows),
        "world_size": world.size,
    }
    runs = [*runs, run]

    def record(status: str, done: dict[int, dict[str, Any]]) -> Metrics:
        return write_metrics(prep, directory, status, done, runs, device, dtype, stop, sink)

    reports = _generate(prep, model, world, directory, rows, stop, sink, record, progress, t1)
    metrics = Metrics()  # rank 0 writes them; every rank returns them
    if world.main:
        stats, wall = combined(reports)
        run["timings"] = timings(prep, stats, t1 - t0, wall, len(prep.ids) - run["n_kept"])
        run["ranks"] = reports
        metrics = _complete(directory, sink, partial(record, "complete"))
    elif sink is not None:
        sink.close("complete")
    return EvalResult(directory, world.broadcast(metrics))


def _generate(
    prep: EvalPrepared,
    model: PreTrainedModel,
    world: World,
    directory: Path,
    rows: dict[int, dict[str, Any]],
    stop: re.Pattern[str] | None,
    sink: SessionSink | None,
    record: Record,
    progress: bool,
    started: float,
) -> list[dict[str, Any]]:
    """This rank's shard of the prompts into its predictions (`rows` gains them); every rank's
    report once all are written. A run that stops records how it ended (rank 0) and raises the
    one-line error saying how to resume."""
    max_new = prep.prompt_config.generation.max_new_tokens
    part = shard(prep.ids, set(rows), world, prep.options.prefix_cache, max_new)
    if world.main:
        record("running", rows)
    log, n_kept = PredictionLog(log_path(directory, world.rank)), len(rows)
    try:
        with sigterm_as_interrupt():
            bar = progress and world.main
            stats = generate_rows(prep, model, log, rows, part.skip, stop, bar, sink)
            log.close()
            if sink is not None:
                sink.finish_files()
            mine = rank_report(
                world, part, len(rows) - n_kept, stats, time.perf_counter() - started
            )
            return world.gather(mine)  # also waits until every rank's predictions are written
    except BaseException as exc:
        log.close()
        if sink is not None:
            sink.stop(exc)
        done = read_all(directory, repair=False) if world.main else rows
        stopped = partial(record, done=done) if world.main else None
        raise stopped_error(exc, stopped, directory, log.path, len(done), len(prep.ids)) from exc


def _complete(
    directory: Path,
    sink: SessionSink | None,
    record: Callable[[dict[int, dict[str, Any]]], Metrics],
) -> Metrics:
    """Rank 0, once every rank is done: every rank's predictions in one file in sample order,
    the one-pass session's task vectors, metrics.json."""
    everything = read_all(directory)
    merge(directory, everything)
    if sink is not None:
        sink.close("complete")
    return record(everything)


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
