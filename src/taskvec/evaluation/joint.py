"""One pass for evaluation and extraction: the hidden states generation's prefill computes are written as a
normal extraction session, and the session and the results directory name each other."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from taskvec.errors import TaskvecError
from taskvec.extraction.prepare import Prepared, prepare
from taskvec.extraction.session_files import new_session, session_metadata
from taskvec.model.generation import Reading
from taskvec.model.loading import ModelRef
from taskvec.session.layout import CONSOLIDATED
from taskvec.session.resume import config_differences

if TYPE_CHECKING:
    from taskvec.evaluation.run import EvalPrepared
from taskvec.session.store import (
    SampleTable,
    SessionWriter,
    check_finite,
    save_json,
    take_lock,
)


def prepare_extraction(config_path: Path, evaluation: EvalPrepared) -> Prepared:
    """Validate an extraction config for one pass with `evaluation` (an `EvalPrepared`): same
    model, samples and prompt texts; a mismatch names the field that differs."""
    if not config_path.is_file():
        raise TaskvecError(
            f"--extract: file '{config_path}' not found; pass an extraction config YAML (see "
            "task_vector_config.yaml)"
        )
    prep = prepare(config_path)
    model: ModelRef = evaluation.model_ref
    if prep.model_ref.identity != model.identity:
        raise TaskvecError(
            f"--extract: the extraction config's model is '{prep.model_ref.spec}', the evaluation's "
            f"'{model.spec}'; use one model"
        )
    _check_same_selection(prep, evaluation)
    ours = [(s.id, p.text) for s, p in zip(prep.samples, prep.prompts)]
    theirs = list(zip((s.id for s in evaluation.samples), (p.text for p in evaluation.prompts)))
    if ours != theirs:
        diff = next(
            (i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs))
        )
        raise TaskvecError(
            f"--extract: the extraction config gives {len(ours)} prompts, the evaluation "
            f"{len(theirs)}, differing from prompt {diff} on; "
            "give both the same prompt config, split and max_samples (evaluation defaults to "
            "split test, extraction to train)"
        )
    return prep


def _check_same_selection(prep: Prepared, evaluation: EvalPrepared) -> None:
    """Split, max_samples and the prompt config agree, or the one that differs is named."""
    options = evaluation.options
    pairs = [
        (
            "split",
            prep.config.split,
            options.split,
            "extraction defaults to train, evaluation to test",
        ),
        ("max_samples", prep.config.max_samples, options.max_samples, "--max-samples"),
    ]
    for name, ours, theirs, note in pairs:
        if ours != theirs:
            raise TaskvecError(
                f"--extract: {name} differs: extraction config {ours!r}, evaluation {theirs!r} "
                f"({note}); make them equal"
            )
    diffs = [  # file paths are compared by the prompts they give, below
        diff
        for diff in config_differences(
            {"prompt_config": prep.prompt_config.model_dump(mode="json")},
            {"prompt_config": evaluation.prompt_config.model_dump(mode="json")},
        )
        if not diff.startswith(("prompt_config.dataset.path", "prompt_config.dataset.splits"))
    ]
    if diffs:
        raise TaskvecError(
            f"--extract: the prompt configs differ ({'; '.join(diffs[:3])}; 'session' is the "
            "extraction config's, 'now' the evaluation's); point both at one prompt config"
        )


class SessionSink:
    """An extraction session filled sample by sample from generation's prefill (`reading`)."""

    def __init__(self, prep: Prepared, device: torch.device, dtype: torch.dtype) -> None:
        self.prep, self.device, self.dtype = prep, device, dtype
        self.paths = new_session(prep)
        self.lock = take_lock(self.paths)  # held until close: `ls` tells a live run from a dead one
        self.items = {it.idx: it for it in prep.items}
        hidden = prep.text_config.hidden_size
        self.writer = SessionWriter(self.paths, prep.keys)
        self.table = SampleTable(
            self.paths, prep.layers, prep.keys, [it.idx for it in prep.items], hidden
        )
        self.started = time.perf_counter()
        self.started_at = datetime.now().isoformat(timespec="seconds")

    @property
    def reading(self) -> Reading:
        """What generation reads: the session's layers, at each sample's token indices (none for
        skipped samples)."""
        return Reading(
            self.prep.layers,
            [
                list(self.items[i].token_indices) if i in self.items else []
                for i in range(len(self.prep.samples))
            ],
        )

    def add(self, idx: int, vectors: torch.Tensor) -> None:
        """Queue one sample's (layers, positions, hidden) vectors for its file and the statistics."""
        item, sample_id = self.items[idx], self.prep.samples[idx].id
        check_finite(vectors[None], [sample_id], self.dtype)
        self.writer.add([item], [sample_id], vectors[None])
        self.table.put([idx], vectors[None])

    def close(self, status: str, results_dir: Path) -> None:
        """Wait for the files; when complete write the task vectors; then metadata naming the
        results directory."""
        try:
            self._close(status, results_dir)
        finally:
            os.close(self.lock)

    def _close(self, status: str, results_dir: Path) -> None:
        self.writer.close()
        consolidated = self.table.summarise() if status == "complete" else False
        lengths = [len(it.ids) for it in self.prep.items]
        extra: dict[str, Any] = {
            "status": status,
            "created_at": self.started_at,
            "n_saved": self.writer.n_saved,
            "evaluation_results": str(results_dir),
            "engine": {"one_pass_with_evaluation": True, "tokens_total": sum(lengths)},
            "timings": {**self.prep.timings, "run_s": time.perf_counter() - self.started},
            "consolidated": CONSOLIDATED if consolidated else None,
        }
        save_json(
            self.paths.task_vector_dir / "metadata.json",
            session_metadata(self.prep, self.paths, self.device, self.dtype, extra),
        )
