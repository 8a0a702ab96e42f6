"""A patching run's results directory while it runs, so a long suite can be resumed.

`run.json` holds the config and status from the start; each task's dev sweep (its vectors
and scores) is saved as `tasks/{task}_dev.pt` when it finishes, and its test accuracies as
`tasks/{task}_test.json`. `taskvec patch --config FILE --resume DIR` checks the config,
keeps the finished tasks and runs the rest; the result equals an uninterrupted run's.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from taskvec.errors import TaskvecError
from taskvec.patching.prompts import PatchPrepared, TaskPrompts
from taskvec.patching.scoring import AnswerScorer
from taskvec.patching.sweep import Scores, TaskRun
from taskvec.session.atomic import save_json, save_torch
from taskvec.session.directories import create_unique_dir
from taskvec.session.resume import config_differences

RUN_FILE = "run.json"
SUMMARY_FILE = "patching.json"


class Checkpoint:
    """The results directory of one patching run: what is finished, and saving what finishes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.tasks = directory / "tasks"

    @classmethod
    def start(cls, prep: PatchPrepared) -> Checkpoint:
        """A new results directory (never an existing one) with `run.json` saying `running`."""
        cfg = prep.config
        stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
        name = f"{cfg.tag or 'patching'}_{prep.model_ref.short_name}_{stamp}"
        checkpoint = cls(create_unique_dir(cfg.output_dir, name))
        checkpoint.tasks.mkdir()
        checkpoint.record(prep, "running")
        return checkpoint

    @classmethod
    def reopen(cls, prep: PatchPrepared, directory: Path) -> Checkpoint:
        """An interrupted run of the same config; anything else is refused, naming why."""
        run = directory / RUN_FILE
        if not run.is_file():
            raise TaskvecError(
                f"--resume: '{directory}' is not a patching results directory (no {RUN_FILE}); "
                "pass the directory `taskvec patch` printed"
            )
        if (directory / SUMMARY_FILE).is_file():
            raise TaskvecError(f"--resume: '{directory}' is already complete; nothing to resume")
        saved = json.loads(run.read_text())["config"]
        diffs = config_differences(saved, prep.config.model_dump(mode="json"))
        if diffs:
            raise TaskvecError(
                f"--resume: the config differs from '{directory.name}' in {len(diffs)} field(s): "
                f"{'; '.join(diffs[:5])}; resume with the config it was run with"
            )
        return cls(directory)

    def record(self, prep: PatchPrepared, status: str) -> None:
        save_json(
            self.directory / RUN_FILE,
            {
                "status": status,
                "config": prep.config.model_dump(mode="json"),
                "config_path": str(prep.config_path),
            },
        )

    def finished(self) -> int:
        """How many tasks have their dev sweep saved."""
        return len(list(self.tasks.glob("*_dev.pt")))

    def has_dev(self, task: str) -> bool:
        return (self.tasks / f"{task}_dev.pt").is_file()

    def save_dev(self, run: TaskRun) -> None:
        record = {
            "vectors": {str(layer): v for layer, v in run.vectors.items()},
            "dev": asdict(run.dev),
            "dev_few": asdict(run.dev_few) if run.dev_few else None,
        }
        save_torch(self.tasks / f"{run.task.name}_dev.pt", record)

    def load_dev(
        self, task: TaskPrompts, scorer: AnswerScorer, layers: list[int]
    ) -> TaskRun | None:
        path = self.tasks / f"{task.name}_dev.pt"
        if not path.is_file():
            return None
        record = torch.load(path, weights_only=True)
        dev = Scores(**record["dev"])
        few = Scores(**record["dev_few"]) if record["dev_few"] else None
        vectors = {int(layer): v for layer, v in record["vectors"].items()}
        curve = {layer: dev.accuracy(1 + i) for i, layer in enumerate(layers)}
        return TaskRun(task, scorer, vectors, dev, few, curve)

    def save_test(self, task: str, test: dict[str, Any]) -> None:
        save_json(self.tasks / f"{task}_test.json", test)

    def load_test(self, task: str) -> dict[str, Any] | None:
        path = self.tasks / f"{task}_test.json"
        return dict(json.loads(path.read_text())) if path.is_file() else None
