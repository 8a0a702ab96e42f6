"""Extraction end to end: load the weights, run every prepared prompt, write (or resume) the
session, record the run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from taskvec.errors import TaskvecError, sigterm_as_interrupt
from taskvec.extraction.distributed import World, joined_world
from taskvec.extraction.prepare import Prepared, prepare
from taskvec.model.engine import DEFAULT_BATCH_TOKENS, Extractor, choose_batching
from taskvec.model.loading import dtype_name, load_model, resolve_device, resolve_dtype
from taskvec.model.prefix import PrefixNode
from taskvec.session.builder import SessionBuilder
from taskvec.session.files import new_session, resolved_config
from taskvec.session.layout import SessionPaths
from taskvec.session.resume import check_matches, locate_session, sound_samples
from taskvec.session.table import SampleTable
from taskvec.settings import prefix_cache_word


def _resume_target(
    prep: Prepared, resume: str, dtype: torch.dtype
) -> tuple[SessionPaths, list[dict[str, Any]]]:
    """The session to continue, after checking it was made by this config; with its earlier runs."""
    paths = locate_session(resume, prep.config.output_dir)
    previous = check_matches(
        paths, resolved_config(prep), [(p.sample_id, p.text) for p in prep.prompts]
    )
    changed = [
        path
        for path, digest in prep.data_sha256.items()
        if previous.get("data_sha256", {}).get(path, digest) != digest
    ]
    if changed:
        raise TaskvecError(
            f"--resume: data file '{changed[0]}' changed since the session was written (its "
            "SHA-256 differs); "
            "restore it or start a new session"
        )
    then, now = previous.get("dtype"), dtype_name(dtype)
    if then is not None and then != now:
        raise TaskvecError(
            f"--resume: the session ran in {then}, this run would use {now}; set `dtype: {then}`"
        )
    return paths, list(previous.get("runs", []))


def _sound_done(prep: Prepared, paths: SessionPaths, table: SampleTable) -> tuple[set[int], int]:
    """Samples of a resumed session whose files are sound (kept in `table`), and how many were
    not (deleted, to redo)."""
    ids = {it.idx: prep.samples[it.idx].id for it in prep.items}
    done, redone = set(), 0
    for idx, record in sound_samples(paths, prep.items, ids, table.flat, table.hidden):
        if record is None:
            redone += 1
        else:
            table.put_record(record)
            done.add(idx)
    return done, redone


def run_extraction(
    prep: Prepared, progress: bool = True, resume: str | None = None
) -> SessionPaths:
    """Load the weights, run every prompt, write the session; returns its paths.

    With `resume` (a session directory or name), continue that session: sound
    per-sample files are kept, the rest are computed. A run that stops early
    records its status in metadata.json and raises a TaskvecError saying how to resume.
    Under torchrun each rank runs its shard of the batches (see `distributed`).
    """
    with joined_world(resolve_device(prep.config.device), prep.config.device_map) as (
        world,
        device,
    ):
        return _run(prep, progress, resume, world, device)


def _run(
    prep: Prepared, progress: bool, resume: str | None, world: World, device: torch.device
) -> SessionPaths:
    """Check a resume target, load the weights, open (or reopen) the session, run the batches,
    record the ending."""
    cfg = prep.config
    dtype = resolve_dtype(cfg.dtype, device)
    # checked before the weights load
    target = _resume_target(prep, resume, dtype) if resume is not None else None
    # before the session exists: a load error writes nothing
    engine, batching, load_s = _load(prep, device, dtype)
    paths, runs = world.on_main(lambda: target or (new_session(prep), []))
    with SessionBuilder(prep, paths, device, dtype, world.main, runs) as session:
        done, tree = _start(prep, session, engine, batching, target is not None, world)
        try:
            t1 = time.perf_counter()
            _extract_batches(prep, engine, tree, done, world, session, progress)
            extract_s = time.perf_counter() - t1
            n_saved = sum(world.gather(session.writer.n_saved))  # also waits for every rank's files
            t2 = time.perf_counter()
            consolidated = session.task_vectors()
        except BaseException as exc:
            session.close_files_quietly()
            session.recorder.fail(
                exc,
                session.writer.n_saved,
                len(prep.items),
                f"taskvec extract --config {prep.config_path} --resume {paths.name}",
            )
        session.recorder.run["extract_s"] = extract_s
        timings = {
            **prep.timings,
            "load_model_s": load_s,
            "extract_s": extract_s,
            "summarise_s": time.perf_counter() - t2,
            "samples_per_s": (len(prep.items) - len(done)) / max(extract_s, 1e-9),
        }
        session.recorder.finish(n_saved, timings=timings, consolidated=consolidated)
    world.barrier()  # every rank returns once the session is complete
    return paths


def _start(
    prep: Prepared,
    session: SessionBuilder,
    engine: Extractor,
    batching: str,
    resumed: bool,
    world: World,
) -> tuple[set[int], PrefixNode]:
    """Keep a resumed session's sound samples, plan the run, record status `running`; the samples
    kept and the plan."""
    table = session.table
    done, redone = world.on_main(
        lambda: _sound_done(prep, session.paths, table) if resumed and table else (set(), 0)
    )
    # the full run's plan, so finished batches are skipped and the rest run as before
    tree = engine.plan(prep.items)
    engine_summary = _engine_summary(prep, engine, tree, batching, world.size)
    session.start(len(done), redone, world.size, engine=engine_summary)
    return done, tree


def _load(prep: Prepared, device: torch.device, dtype: torch.dtype) -> tuple[Extractor, str, float]:
    """The weights in the engine that runs them, the batching chosen and the seconds it took."""
    cfg = prep.config
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    model = load_model(prep.model_ref, dtype, device, cfg.device_map)
    load_s = time.perf_counter() - t0
    batching = choose_batching(cfg.batching, device, prep.model_config)
    engine = Extractor(
        model,
        prep.layers,
        cfg.max_batch_tokens or DEFAULT_BATCH_TOKENS[batching],
        cfg.batch_size,
        cfg.prefix_cache,
        batching == "packed",
    )
    return engine, batching, load_s


def _engine_summary(
    prep: Prepared, engine: Extractor, tree: PrefixNode, batching: str, world_size: int
) -> dict[str, Any]:
    """How the work was scheduled (metadata `engine`)."""
    cfg, lengths = prep.config, [len(it.ids) for it in prep.items]
    return {
        "prefix_cache": prefix_cache_word(cfg.prefix_cache),
        "prefix_nodes": [
            {"prefix_len": n.prefix_len, "n_samples": len(n.members)} for n in tree.walk()
        ],
        "batching": batching,
        "max_batch_tokens": engine.max_batch_tokens,
        "batch_size": cfg.batch_size,
        "world_size": world_size,
        "tokens_total": sum(lengths),
        "tokens_computed": tree.tokens_computed(lengths),
    }


def _extract_batches(
    prep: Prepared,
    engine: Extractor,
    tree: PrefixNode,
    done: set[int],
    world: World,
    session: SessionBuilder,
    progress: bool,
) -> None:
    """The loop: this rank's batches through the model, checked, written, kept for the
    statistics; a bar counting tokens."""
    elsewhere = world.shard(engine.schedule(prep.items, tree)) if world.size > 1 else set()
    mine = sum(1 for it in prep.items if it.idx not in done and it.idx not in elsewhere)
    # the bar counts tokens: prefixes make early samples slow
    work = engine.work(prep.items, tree, done | elsewhere)
    n_run = 0
    with (
        sigterm_as_interrupt(),
        tqdm(
            total=work,
            unit="tok",
            unit_scale=True,
            disable=not (progress and world.main),
            desc="extract",
            postfix=f"0/{mine} samples",
        ) as bar,
    ):
        for batch in engine.run(prep.items, tree, done | elsewhere):
            rows = [r for r, idx in enumerate(batch.idxs) if idx not in done]
            session.add([batch.idxs[r] for r in rows], batch.vectors[rows])
            n_run += len(rows)
            bar.update(engine.tokens_done - bar.n)
            bar.set_postfix_str(f"{n_run}/{mine} samples")
        session.finish_files()


def extract(config_path: Path, progress: bool = True, resume: str | None = None) -> SessionPaths:
    """Validate and prepare (writing nothing on error), then run and write (or resume) the session."""
    return run_extraction(prepare(config_path), progress, resume)
