"""Extraction end to end: validate and prepare everything, then run the model and write a session."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm
from transformers import PretrainedConfig, PreTrainedTokenizerBase

from taskvec.config import ExtractionConfig, load_config
from taskvec.data.base import Sample
from taskvec.data.files import absolute_paths, file_sha256, split_file
from taskvec.errors import TaskvecError
from taskvec.extraction.distributed import World, join_world, leave_world
from taskvec.model.engine import DEFAULT_BATCH_TOKENS, Extractor, Item, choose_batching
from taskvec.model.loading import ModelRef, load_model, load_model_config, load_tokenizer, resolve_device, resolve_dtype, resolve_model
from taskvec.model.prefix import PrefixNode
from taskvec.positions import VectorKey, normalise_layer, resolve_position
from taskvec.prompts.build import build_prompts, select_samples, warn_if_short
from taskvec.prompts.config import PromptConfig, load_prompt_config
from taskvec.prompts.render import RenderedPrompt
from taskvec.session.layout import CONSOLIDATED, SessionPaths, session_name
from taskvec.session.recorder import SessionRecorder
from taskvec.session.resume import check_matches, locate_session, sound_samples
from taskvec.session.store import SampleTable, SessionWriter, check_writable, create_session, save_text, save_yaml, session_lock
from taskvec.versions import package_versions

T = TypeVar("T")


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
    def keys(self) -> list[list[str]]:
        return [[str(VectorKey(layer, p)) for p in self.config.token_positions] for layer in self.layers]


def _text_config(model_config: PretrainedConfig) -> PretrainedConfig:
    """The decoder's own config (multimodal configs nest it)."""
    return model_config.get_text_config()


def prepare(config_path: Path) -> Prepared:
    """Validate configs, read the model config, load data, render and tokenise every prompt."""
    start = time.perf_counter()
    cfg = load_config(config_path)
    given = cfg.prompt_config
    prompt_cfg = given if isinstance(given, PromptConfig) else load_prompt_config(given)
    spec = cfg.model or prompt_cfg.model
    if spec is None:
        raise TaskvecError("model: neither the extraction config nor the prompt config names a model; add `model:` to one")
    check_writable(cfg.output_dir)
    resolve_device(cfg.device)
    base_dir = given.parent if isinstance(given, Path) else config_path.parent
    if prompt_cfg.dataset.source in ("file", "finqa"):  # absolute paths: the session's config.yaml re-runs from anywhere
        prompt_cfg = prompt_cfg.model_copy(update={"dataset": absolute_paths(prompt_cfg.dataset, base_dir)})
    samples, pool = select_samples(prompt_cfg, cfg.split, cfg.max_samples, base_dir)
    warn_if_short(cfg.max_samples, samples, cfg.split)
    ref = resolve_model(spec)
    model_config = load_model_config(ref)
    n_layers = _text_config(model_config).num_hidden_layers
    layers = [normalise_layer(layer, n_layers) for layer in cfg.layers]
    if len(set(layers)) != len(layers):
        raise TaskvecError(f"layers: {cfg.layers} name the same block twice (negative layers count from the end); list each once")
    tokenizer = load_tokenizer(ref)
    prompts, items, skipped = [], [], []
    for idx, (sample, (prompt, token_ids)) in enumerate(zip(samples, build_prompts(prompt_cfg, samples, pool, tokenizer))):
        ids = np.asarray(token_ids, dtype=np.int32)
        prompts.append(prompt)
        try:
            indices = [resolve_position(p, len(ids), sample.id) for p in cfg.token_positions]
        except TaskvecError as exc:
            if cfg.on_out_of_range == "error":
                raise TaskvecError(f"{exc} (or set `on_out_of_range: skip` to skip such samples)") from None
            skipped.append({"sample_idx": idx, "sample_id": sample.id, "n_tokens": len(ids), "reason": str(exc)})
            continue
        items.append(Item(idx, ids, indices))
    if not items:
        raise TaskvecError(f"token_positions: every sample was out of range (first: {skipped[0]['reason']})")
    timings = {"prepare_s": time.perf_counter() - start}
    return Prepared(config_path, cfg, prompt_cfg, ref, model_config, tokenizer, layers, samples, prompts, items, skipped, timings,
                    _data_hashes(prompt_cfg, cfg.split))


def _data_hashes(prompt_cfg: PromptConfig, split: str) -> dict[str, str]:
    """SHA-256 of each data file the run reads (query split and demonstration split), by absolute path."""
    ds = prompt_cfg.dataset
    if ds.source not in ("file", "finqa"):
        return {}
    splits = {split} | ({prompt_cfg.demonstrations.split} if prompt_cfg.n_shot else set())
    files = {split_file(ds, name) for name in splits}
    return {str(path): file_sha256(path) for path in sorted(files)}


def _resolved_config(prep: Prepared) -> dict[str, Any]:
    cfg = prep.config.model_dump(mode="json")
    cfg["model"] = prep.model_ref.spec
    cfg["prompt_config"] = prep.prompt_config.model_dump(mode="json")  # inlined: this file re-runs as it is
    return cfg


def _write_prompts(paths: SessionPaths, prep: Prepared) -> None:
    tokens = {it.idx: len(it.ids) for it in prep.items} | {s["sample_idx"]: s["n_tokens"] for s in prep.skipped}
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


def _metadata(prep: Prepared, paths: SessionPaths, device: torch.device, dtype: torch.dtype, extra: dict[str, Any]) -> dict[str, Any]:
    cfg = prep.config
    return {
        "session_name": paths.name,
        "status": "running",
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
        "data_sha256": prep.data_sha256,
        "split": cfg.split,
        "max_samples": cfg.max_samples,
        "n_split_samples_used": len(prep.samples),  # fewer than max_samples when the split is shorter (warned)
        "n_samples": len(prep.items),
        "sample_ids": [prep.samples[it.idx].id for it in prep.items],
        "sample_idxs": [it.idx for it in prep.items],
        "skipped": prep.skipped,
        "use_chat_template": prep.prompt_config.use_chat_template,
        "add_special_tokens": prep.prompts[0].add_special_tokens,
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(device),
        "seed": cfg.seed,
        "versions": package_versions(),
        **extra,
    }


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a scheduler's kill) like Ctrl-C, so the run ends cleanly and can be resumed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_finite(vectors: torch.Tensor, sample_ids: list[str], dtype: torch.dtype) -> None:
    """Stop on NaN or Inf (typically float16 overflow), naming the samples."""
    bad = [sid for sid, ok in zip(sample_ids, vectors.isfinite().flatten(1).all(dim=1).tolist()) if not ok]
    if bad:
        raise TaskvecError(
            f"hidden states contain NaN or Inf for {len(bad)} sample(s): {', '.join(bad[:10])}"
            f"{' ...' if len(bad) > 10 else ''} (dtype {str(dtype).removeprefix('torch.')}: float16 overflows in some models); "
            "use `dtype: bfloat16` or `float32` in a new session"
        )


def _new_session(prep: Prepared) -> tuple[SessionPaths, list[dict[str, Any]]]:
    """Create the session directories and write its config and prompts."""
    cfg = prep.config
    prompt_cfg = prep.prompt_config
    name = session_name(cfg.tag, prompt_cfg.prompt_type, prompt_cfg.n_shot, cfg.split, prep.model_ref.short_name, datetime.now())
    paths = create_session(cfg.output_dir, name)
    save_yaml(paths.config, _resolved_config(prep))
    _write_prompts(paths, prep)
    return paths, []


def _resume_target(prep: Prepared, resume: str, dtype: torch.dtype) -> tuple[SessionPaths, list[dict[str, Any]]]:
    """The session to continue, after checking it was made by this config; with its earlier runs."""
    paths = locate_session(resume, prep.config.output_dir)
    previous = check_matches(paths, _resolved_config(prep), [(p.sample_id, p.text) for p in prep.prompts])
    changed = [path for path, digest in prep.data_sha256.items() if previous.get("data_sha256", {}).get(path, digest) != digest]
    if changed:
        raise TaskvecError(f"--resume: data file '{changed[0]}' changed since the session was written (its SHA-256 differs); "
                           "restore it or start a new session")
    then, now = previous.get("dtype"), str(dtype).removeprefix("torch.")
    if then is not None and then != now:
        raise TaskvecError(f"--resume: the session ran in {then}, this run would use {now}; set `dtype: {then}`")
    return paths, list(previous.get("runs", []))


def _on_main(world: World, work: Callable[[], T]) -> T:
    """Run `work` on rank 0 only and hand its result, or its TaskvecError, to every rank."""
    result, error = None, None
    if world.main:
        try:
            result = work()
        except TaskvecError as exc:
            error = str(exc)
    result, error = world.broadcast((result, error))
    if error is not None:
        raise TaskvecError(error)
    return result  # type: ignore[return-value]


def _sound_done(prep: Prepared, paths: SessionPaths, table: SampleTable) -> tuple[set[int], int]:
    """Samples of a resumed session whose files are sound (kept in `table`), and how many were not (deleted, to redo)."""
    ids = {it.idx: prep.samples[it.idx].id for it in prep.items}
    done, redone = set(), 0
    for idx, record in sound_samples(paths, prep.items, ids, table.flat, table.hidden):
        if record is None:
            redone += 1
        else:
            table.put_record(record)
            done.add(idx)
    return done, redone


def run_extraction(prep: Prepared, progress: bool = True, resume: str | None = None) -> SessionPaths:
    """Load the weights, run every prompt, write the session; returns its paths.

    With `resume` (a session directory or name), continue that session: sound
    per-sample files are kept, the rest are computed. A run that stops early
    records its status in metadata.json and raises a TaskvecError saying how to resume.
    Under torchrun each rank runs its shard of the batches (see `distributed`).
    """
    world, device = join_world(resolve_device(prep.config.device))
    try:
        return _run(prep, progress, resume, world, device)
    finally:
        leave_world(world)


def _run(prep: Prepared, progress: bool, resume: str | None, world: World, device: torch.device) -> SessionPaths:
    """Check a resume target, load the weights, open (or reopen) the session, run the batches, record the ending."""
    cfg = prep.config
    dtype = resolve_dtype(cfg.dtype, device)
    target = _resume_target(prep, resume, dtype) if resume is not None else None  # checked before the weights load
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    model = load_model(prep.model_ref, dtype, device, cfg.device_map)  # before the session exists: a load error writes nothing
    load_s = time.perf_counter() - t0
    batching = choose_batching(cfg.batching, device, prep.model_config)
    engine = Extractor(model, prep.layers, cfg.max_batch_tokens or DEFAULT_BATCH_TOKENS[batching], cfg.batch_size,
                       cfg.prefix_cache == "auto", batching == "packed")
    paths, runs = _on_main(world, lambda: target or _new_session(prep))
    hidden = _text_config(prep.model_config).hidden_size
    with session_lock(paths) if world.main else nullcontext():
        table = SampleTable(paths, prep.layers, prep.keys, [it.idx for it in prep.items], hidden) if world.main else None
        done, redone = _on_main(world, lambda: _sound_done(prep, paths, table) if target and table else (set(), 0))
        tree = engine.plan(prep.items)  # the full run's plan, so finished batches are skipped and the rest run as before
        recorder = SessionRecorder(paths, lambda **extra: _metadata(prep, paths, device, dtype, extra), runs, world.main)
        recorder.start(len(done), {"device": str(device), "world_size": world.size, "n_kept": len(done), "n_redone": redone,
                                   "n_to_compute": len(prep.items) - len(done)},
                       engine=_engine_summary(prep, engine, tree, batching, world.size))
        writer = SessionWriter(paths, prep.keys, n_saved=len(done) if world.main else 0)
        try:
            t1 = time.perf_counter()
            _extract_batches(prep, engine, tree, done, world, writer, table, dtype, progress)
            extract_s = time.perf_counter() - t1
            n_saved = sum(world.gather(writer.n_saved))  # also waits for every rank's files
            t2 = time.perf_counter()
            consolidated = table.summarise() if table is not None else False
        except BaseException as exc:
            _close_quietly(writer)
            recorder.fail(exc, writer.n_saved, len(prep.items), f"taskvec extract --config {prep.config_path} --resume {paths.name}")
        recorder.run["extract_s"] = extract_s
        timings = {**prep.timings, "load_model_s": load_s, "extract_s": extract_s, "summarise_s": time.perf_counter() - t2,
                   "samples_per_s": (len(prep.items) - len(done)) / max(extract_s, 1e-9)}
        recorder.finish(n_saved, timings=timings, consolidated=CONSOLIDATED if consolidated else None)
    world.barrier()  # every rank returns once the session is complete
    return paths


def _engine_summary(prep: Prepared, engine: Extractor, tree: PrefixNode, batching: str, world_size: int) -> dict[str, Any]:
    """How the work was scheduled (metadata `engine`)."""
    cfg, lengths = prep.config, [len(it.ids) for it in prep.items]
    return {
        "prefix_cache": cfg.prefix_cache,
        "prefix_nodes": [{"prefix_len": n.prefix_len, "n_samples": len(n.members)} for n in tree.walk()],
        "batching": batching,
        "max_batch_tokens": engine.max_batch_tokens,
        "batch_size": cfg.batch_size,
        "world_size": world_size,
        "tokens_total": sum(lengths),
        "tokens_computed": tree.tokens_computed(lengths),
    }


def _extract_batches(prep: Prepared, engine: Extractor, tree: PrefixNode, done: set[int], world: World, writer: SessionWriter,
                     table: SampleTable | None, dtype: torch.dtype, progress: bool) -> None:
    """The loop: this rank's batches through the model, checked, written, kept for the statistics; a bar counting tokens."""
    elsewhere = world.shard(engine.schedule(prep.items, tree)) if world.size > 1 else set()
    mine = sum(1 for it in prep.items if it.idx not in done and it.idx not in elsewhere)
    by_idx = {it.idx: it for it in prep.items}
    work = engine.work(prep.items, tree, done | elsewhere)  # the bar counts tokens: prefixes make early samples slow
    n_run = 0
    with _sigterm_as_interrupt(), tqdm(total=work, unit="tok", unit_scale=True, disable=not (progress and world.main),
                                       desc="extract", postfix=f"0/{mine} samples") as bar:
        for batch in engine.run(prep.items, tree, done | elsewhere):
            rows = [r for r, idx in enumerate(batch.idxs) if idx not in done]
            items = [by_idx[batch.idxs[r]] for r in rows]
            sample_ids = [prep.samples[it.idx].id for it in items]
            vectors = batch.vectors[rows]
            _check_finite(vectors, sample_ids, dtype)
            writer.add(items, sample_ids, vectors)
            if table is not None:
                table.put([it.idx for it in items], vectors)
            n_run += len(items)
            bar.update(engine.tokens_done - bar.n)
            bar.set_postfix_str(f"{n_run}/{mine} samples")
        writer.close()


def _close_quietly(writer: SessionWriter) -> None:
    """Close the writer after a failure; the first error is the one reported."""
    try:
        writer.close()
    except Exception:  # noqa: BLE001
        pass


def extract(config_path: Path, progress: bool = True, resume: str | None = None) -> SessionPaths:
    """Validate and prepare (writing nothing on error), then run and write (or resume) the session."""
    return run_extraction(prepare(config_path), progress, resume)
