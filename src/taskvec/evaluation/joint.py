"""One pass for evaluation and extraction: the hidden states generation's prefill computes are written as a
normal extraction session, and the session and the results directory name each other."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from taskvec.errors import TaskvecError
from taskvec.extraction.distributed import World
from taskvec.extraction.prepare import Prepared, prepare
from taskvec.model.generation import Reading
from taskvec.model.loading import ModelRef
from taskvec.session.builder import SessionBuilder
from taskvec.session.files import new_session
from taskvec.session.layout import SAMPLE_GLOB, SessionPaths
from taskvec.session.resume import config_differences

if TYPE_CHECKING:
    from taskvec.evaluation.prepare import EvalPrepared


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
    """An extraction session filled sample by sample from generation's prefill (`reading`),
    written by the `SessionBuilder` `taskvec extract` uses; it and the results directory
    (`results_dir`) name each other."""

    def __init__(
        self,
        prep: Prepared,
        device: torch.device,
        dtype: torch.dtype,
        world: World,
        results_dir: Path,
    ) -> None:
        self.prep, self.world = prep, world
        paths = world.on_main(lambda: new_session(prep))
        self.session = SessionBuilder(prep, paths, device, dtype, world.main)
        engine = {
            "one_pass_with_evaluation": True,
            "tokens_total": sum(len(it.ids) for it in prep.items),
            "world_size": world.size,
        }
        try:
            self.session.start(0, 0, world.size, evaluation_results=str(results_dir), engine=engine)
        except BaseException:
            self.session.release()
            raise
        self.started = time.perf_counter()

    @property
    def paths(self) -> SessionPaths:
        return self.session.paths

    @property
    def reading(self) -> Reading:
        """What generation reads: the session's layers, at each sample's token indices (none for
        skipped samples)."""
        items = self.session.items
        return Reading(
            self.prep.layers,
            [
                list(items[i].token_indices) if i in items else []
                for i in range(len(self.prep.samples))
            ],
        )

    def add(self, idx: int, vectors: torch.Tensor) -> None:
        """Queue one sample's (layers, positions, hidden) vectors for its file and the statistics."""
        self.session.add([idx], vectors[None])

    def finish_files(self) -> int:
        """Wait until this rank's sample files are written; how many there are."""
        return self.session.finish_files()

    def close(self, status: str) -> None:
        """Wait for the files; on rank 0, once every rank's files are written, the task vectors
        (when complete) and the run's ending in metadata.json."""
        try:
            self.finish_files()
            if self.world.main:
                consolidated = self.session.task_vectors() if status == "complete" else None
                self.session.recorder.record(
                    status,
                    sum(1 for _ in self.paths.raw_dir.glob(SAMPLE_GLOB)),
                    timings={**self.prep.timings, "run_s": time.perf_counter() - self.started},
                    consolidated=consolidated,
                )
        finally:
            self.session.release()

    def stop(self, exc: BaseException) -> None:
        """Record the session as interrupted (by `exc`, a KeyboardInterrupt) or failed; the
        evaluation's own error is the one reported."""
        try:
            self.close("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
        except Exception:  # noqa: BLE001
            pass
