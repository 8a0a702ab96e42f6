"""Task-vector patching (Hendel et al. 2023, "In-Context Learning Creates Task Vectors").

The task vector of layer L is the mean last-token output of block L over few-shot
prompts. Run a zero-shot prompt and, during its prefill, replace the hidden state of
its last token at the output of block L by that vector (or add `scale` times it); if the
model now answers like the few-shot prompt, the vector carried the task. Layers are swept
on a dev split, the best one is reported on the test split next to zero-shot and few-shot
accuracy. Answers are single words, scored by the free argmax next token (and, as a
second number, the argmax restricted to the task's answer words).

Speed (`intervene.py`): each zero-shot prompt's KV cache without its last token is computed once; the last
token then runs once for all swept layers at the same time, one batch row per layer (row 0
unpatched = zero-shot), with one hook per block that patches only its own row.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from taskvec.config import Device, DType
from taskvec.data.base import Sample
from taskvec.errors import TaskvecError
from taskvec.intervene import full_logits, last_token_logits, mean_last_token_vectors, prefix_cache
from taskvec.models import ModelRef, load_model, load_model_config, load_tokenizer, resolve_device, resolve_dtype, resolve_model
from taskvec.prompts.build import build_prompts, select_samples
from taskvec.prompts.config import PromptConfig, load_prompt_config
from taskvec.store import check_writable, create_unique_dir, save_json
from taskvec.validation import load_yaml_model
from taskvec.versions import package_versions

# --- config -----------------------------------------------------------------------------


class PatchConfig(BaseModel):
    """A patching run: where task vectors come from, the zero-shot prompts they are patched into, the sweep."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="overrides the prompt configs' model")
    task_vectors: str | None = Field(None, description="session (directory or name under session_dir) with layer_{L}_pos_last means")
    session_dir: Path = Field(Path("outputs"), description="where session names are looked up")
    fewshot_prompt_config: Path | None = Field(None, description="few-shot prompt config: task vectors on the fly and the few-shot baseline")
    zero_shot_prompt_config: Path
    tasks: list[str] | None = Field(None, description="builtin task sets to run one by one (overrides dataset.name)")
    layers: list[int] | None = Field(None, description="blocks to sweep (default: all; negative counts from the end)")
    mode: Literal["replace", "add"] = "replace"
    scale: float = Field(1.0, description="add mode only: hidden += scale * vector")
    dev_split: str = "train"
    test_split: str = "test"
    tv_max_samples: int = Field(50, ge=1, description="few-shot prompts averaged into the task vector (first N of dev_split)")
    dev_max_samples: int = Field(50, ge=1, description="zero-shot dev queries for the sweep (the next N of dev_split)")
    test_max_samples: int = Field(100, ge=1, description="test queries (first N of test_split)")
    output_dir: Path = Path("results")
    tag: str | None = None
    device: Device = "auto"
    dtype: DType = "auto"
    batch_size: int = Field(8, ge=1, description="few-shot prompts per forward")
    max_batch_tokens: int = Field(4096, ge=1)

    @field_validator("layers")
    @classmethod
    def _layers(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and not value:
            raise ValueError("list at least one layer, or leave `layers` out to sweep all blocks")
        return value

    @model_validator(mode="after")
    def _sources(self) -> PatchConfig:
        if self.task_vectors is None and self.fewshot_prompt_config is None:
            raise ValueError("set `fewshot_prompt_config` (vectors extracted on the fly) or `task_vectors` (a session)")
        if self.task_vectors is not None and self.tasks and len(self.tasks) > 1:
            raise ValueError("a `task_vectors` session holds one task's vectors; with several `tasks` use `fewshot_prompt_config`")
        if self.mode == "replace" and self.scale != 1.0:
            raise ValueError("`scale` applies to mode: add only; remove it or set `mode: add`")
        return self


def load_patch_config(path: Path) -> PatchConfig:
    """Read and validate a patch config YAML, with one-line errors; relative paths are taken as written."""
    missing = f"--config: file '{path}' not found; pass a patch config YAML (see configs/smollm2-135m/short_patch_plain.yaml)"
    return load_yaml_model(path, PatchConfig, "patch config", missing)


# --- scoring ---------------------------------------------------------------------------


def normalise(text: str) -> str:
    return text.strip().lower()


class Scorer:
    """Free-argmax and label-restricted next-token predictions, compared with the answer word's first token.

    For single-token answers (the intended case) the first token is the word itself.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, labels: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.labels = sorted({normalise(w) for w in labels})
        # each label's first token, with and without a leading space (plain text vs chat turn)
        self.variants = {w: sorted({tokenizer.encode(v, add_special_tokens=False)[0] for v in (w, " " + w)}) for w in self.labels}
        self.single_token = all(len(tokenizer.encode(" " + w, add_special_tokens=False)) == 1 for w in self.labels)

    def key(self, word: str) -> str:
        """What a correct prediction reads as: the decoded first token of ' word', normalised."""
        return normalise(self.tokenizer.decode(self.tokenizer.encode(" " + normalise(word), add_special_tokens=False)[:1]))

    def free(self, logits: torch.Tensor) -> list[str]:
        """The decoded argmax token of each row, normalised."""
        return [normalise(self.tokenizer.decode([int(t)])) for t in logits.argmax(-1)]

    def restricted(self, logits: torch.Tensor) -> list[str]:
        """Per row, the key of the label whose best token variant has the highest logit."""
        scores = torch.stack([logits[:, self.variants[w]].max(-1).values for w in self.labels], dim=-1)
        return [self.key(self.labels[int(i)]) for i in scores.argmax(-1)]


# --- the run ---------------------------------------------------------------------------


@dataclass
class TaskPrompts:
    """One task's token ids: few-shot prompts for the vector, dev and test queries zero- and few-shot."""

    name: str
    tv: list[list[int]]
    dev_zero: list[list[int]]
    dev_few: list[list[int]]
    dev_gold: list[str]
    test_zero: list[list[int]]
    test_few: list[list[int]]
    test_gold: list[str]
    example: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """The task's answer words (those its dev and test queries use)."""
        return sorted({normalise(g) for g in (*self.dev_gold, *self.test_gold)})


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
    labels: list[str]
    session_vectors: dict[int, torch.Tensor] | None


@dataclass(frozen=True)
class PatchResult:
    """Where the results went and what `patching.json` says."""

    directory: Path
    summary: dict[str, Any]


def _resolve(base: Path, path: Path) -> Path:
    return path if path.is_absolute() or path.exists() else base / path


def _prompt_config(base: Path, path: Path, field_name: str, task: str | None, model: str | None) -> PromptConfig:
    full = _resolve(base, path)
    if not full.is_file():
        raise TaskvecError(f"{field_name}: file '{path}' not found; point it at a prompt config YAML (e.g. configs/smollm2-135m/short_plain_0shot.yaml)")
    cfg = load_prompt_config(full)
    if task is not None:
        if cfg.dataset.source != "builtin":
            raise TaskvecError(f"tasks: names builtin task sets but {field_name} uses dataset.source '{cfg.dataset.source}'; remove `tasks`")
        cfg = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"name": task})})
    if model is not None:
        cfg = cfg.model_copy(update={"model": model})
    return cfg


def _ids(cfg: PromptConfig, samples: list[Sample], pool: list[Sample], tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    return [ids for _, ids in build_prompts(cfg, samples, pool, tokenizer)]


def _normalise_layers(layers: list[int], n_layers: int, field_name: str) -> list[int]:
    out = []
    for layer in layers:
        if not -n_layers <= layer < n_layers:
            raise TaskvecError(f"{field_name}: layer {layer} is out of range for a model with {n_layers} blocks; use 0..{n_layers - 1} or -{n_layers}..-1")
        out.append(layer % n_layers)
    return sorted(set(out))


def _task_prompts(cfg: PatchConfig, base: Path, task: str | None, tokenizer: PreTrainedTokenizerBase) -> TaskPrompts:
    """One task's prompts; the dev split's first tv_max_samples build the vector, the next dev_max_samples are swept."""
    zero = _prompt_config(base, cfg.zero_shot_prompt_config, "zero_shot_prompt_config", task, cfg.model)
    few = _prompt_config(base, cfg.fewshot_prompt_config, "fewshot_prompt_config", task, cfg.model) if cfg.fewshot_prompt_config else None
    if few is not None and few.n_shot == 0:
        raise TaskvecError("fewshot_prompt_config: its n_shot is 0; point it at a few-shot prompt config (n_shot >= 1)")
    if zero.n_shot != 0:
        raise TaskvecError(f"zero_shot_prompt_config: its n_shot is {zero.n_shot}; point it at a zero-shot prompt config")
    n_dev = cfg.tv_max_samples + cfg.dev_max_samples
    dev_zero_s, _ = select_samples(zero, cfg.dev_split, n_dev, base)
    if len(dev_zero_s) < n_dev:
        raise TaskvecError(f"dev_split: '{cfg.dev_split}' has {len(dev_zero_s)} samples, fewer than tv_max_samples + dev_max_samples = {n_dev}; lower them or enlarge the split")
    test_s, _ = select_samples(zero, cfg.test_split, cfg.test_max_samples, base)
    tv_s, dev_s = dev_zero_s[: cfg.tv_max_samples], dev_zero_s[cfg.tv_max_samples :]
    empty: list[list[int]] = []
    tv_ids, dev_few, test_few = empty, empty, empty
    if few is not None:
        _, pool = select_samples(few, cfg.dev_split, n_dev, base)
        tv_ids, dev_few = _ids(few, tv_s, pool, tokenizer), _ids(few, dev_s, pool, tokenizer)
        _, test_pool = select_samples(few, cfg.test_split, cfg.test_max_samples, base)
        test_few = _ids(few, test_s, test_pool, tokenizer)
    dev_zero, test_zero = _ids(zero, dev_s, [], tokenizer), _ids(zero, test_s, [], tokenizer)
    example = {"zero_shot": tokenizer.decode(test_zero[0])}
    if test_few:
        example["few_shot"] = tokenizer.decode(test_few[0])
    return TaskPrompts(task or zero.dataset.name or "default", tv_ids, dev_zero, dev_few, [s.answer_text for s in dev_s],
                       test_zero, test_few, [s.answer_text for s in test_s], example)


def prepare_patching(config_path: Path) -> PatchPrepared:
    """Validate the patch config, both prompt configs, the splits and layers; render and tokenise every prompt (no weights)."""
    cfg = load_patch_config(config_path)
    base = config_path.parent
    check_writable(cfg.output_dir)
    resolve_device(cfg.device)
    # the model comes from the patch config or the zero-shot prompt config; resolve it first for the tokenizer
    zero = _prompt_config(base, cfg.zero_shot_prompt_config, "zero_shot_prompt_config", None, cfg.model)
    few_model = _prompt_config(base, cfg.fewshot_prompt_config, "fewshot_prompt_config", None, cfg.model).model if cfg.fewshot_prompt_config else None
    model = zero.model or few_model
    if model is None:
        raise TaskvecError("model: neither the patch config nor the prompt configs name a model; add `model:`")
    ref = resolve_model(model)
    model_cfg = load_model_config(ref).get_text_config()
    n_layers, hidden = int(model_cfg.num_hidden_layers), int(model_cfg.hidden_size)
    session_vectors = None
    if cfg.task_vectors is not None:
        from taskvec.session import load_session

        session = load_session(cfg.task_vectors, cfg.session_dir)
        available = [layer for layer in session.layers if f"layer_{layer}_pos_last" in session.keys]
        if not available:
            raise TaskvecError(f"task_vectors: session '{session.name}' has no `last` position vectors; extract with token_positions: [last]")
        wanted = _normalise_layers(cfg.layers, n_layers, "layers") if cfg.layers is not None else available
        missing = [layer for layer in wanted if layer not in available]
        if missing:
            raise TaskvecError(f"layers: session '{session.name}' has no vectors for layer(s) {missing}; use some of {available} or re-extract")
        session_vectors = {layer: session.mean(f"layer_{layer}_pos_last").float() for layer in wanted}
        if session_vectors[wanted[0]].numel() != hidden:
            raise TaskvecError(f"task_vectors: session '{session.name}' holds {session_vectors[wanted[0]].numel()}-dim vectors but the model's "
                               f"hidden size is {hidden}; use a session extracted from the same model")
        layers = wanted
    else:
        layers = _normalise_layers(cfg.layers, n_layers, "layers") if cfg.layers is not None else list(range(n_layers))
    tokenizer = load_tokenizer(ref)
    tasks = [_task_prompts(cfg, base, task, tokenizer) for task in (cfg.tasks or [None])]
    labels = sorted({normalise(g) for t in tasks for g in (*t.dev_gold, *t.test_gold)})
    return PatchPrepared(config_path, cfg, ref, tokenizer, n_layers, layers, tasks, labels, session_vectors)


def _accuracy(predicted: list[str], gold: list[str]) -> float:
    """Share of predictions equal to their gold key."""
    return sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold) if gold else math.nan


@dataclass(frozen=True)
class Predictions:
    """Per prompt and per row (0 = unpatched, 1+i = patched at layers[i]): free-argmax word and restricted label."""

    free: list[list[str]]
    restricted: list[list[str]]

    def accuracy(self, row: int, gold: list[str]) -> tuple[float, float]:
        """(free, restricted) accuracy of column `row` against `gold`."""
        return _accuracy([p[row] for p in self.free], gold), _accuracy([p[row] for p in self.restricted], gold)


def _predict(scorer: Scorer, logits: torch.Tensor) -> tuple[list[str], list[str]]:
    return scorer.free(logits), scorer.restricted(logits)


def _sweep(model: PreTrainedModel, scorer: Scorer, prompts: list[list[int]], vectors: dict[int, torch.Tensor],
           layers: list[int], cfg: PatchConfig, desc: str | None) -> Predictions:
    """Each zero-shot prompt unpatched and patched at every layer in `layers` (one last-token forward per prompt)."""
    free, restricted = [], []
    for ids in tqdm(prompts, desc=desc, disable=desc is None, leave=False):
        logits = last_token_logits(model, ids, prefix_cache(model, ids), vectors, layers, cfg.mode, cfg.scale)
        f, r = _predict(scorer, logits)
        free.append(f)
        restricted.append(r)
    return Predictions(free, restricted)


def _few(model: PreTrainedModel, scorer: Scorer, prompts: list[list[int]], desc: str | None) -> Predictions:
    """Few-shot prompts, one plain forward each."""
    free, restricted = [], []
    for ids in tqdm(prompts, desc=desc, disable=desc is None, leave=False):
        f, r = _predict(scorer, full_logits(model, ids)[None])
        free.append(f)
        restricted.append(r)
    return Predictions(free, restricted)


def run_patching(prep: PatchPrepared, progress: bool = True) -> PatchResult:
    """Load the model, sweep the layers on dev, evaluate the best on test, write patching.json and patching.png."""
    cfg, layers = prep.config, prep.layers
    timings: dict[str, float] = {}
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    model = load_model(prep.model_ref, resolve_dtype(cfg.dtype, device), device)
    timings["load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    swept = []
    for task in prep.tasks:
        scorer = Scorer(prep.tokenizer, task.labels)  # restricted accuracy: this task's answer words only
        dev_gold = [scorer.key(g) for g in task.dev_gold]
        desc = (lambda what, name=task.name: f"{name}: {what}") if progress else (lambda what: None)
        vectors = prep.session_vectors or mean_last_token_vectors(model, task.tv, layers, cfg.batch_size, cfg.max_batch_tokens)
        dev = _sweep(model, scorer, task.dev_zero, vectors, layers, cfg, desc("dev sweep"))
        dev_few = _few(model, scorer, task.dev_few, desc("dev few-shot")) if task.dev_few else None
        curve = {layer: dev.accuracy(1 + i, dev_gold) for i, layer in enumerate(layers)}
        swept.append((task, scorer, vectors, dev, dev_few, curve, dev_gold))
    timings["dev_s"] = time.perf_counter() - start
    # one layer for all tasks: the best mean dev accuracy (free argmax; ties go to the shallower layer)
    dev_curve = {layer: sum(c[layer][0] for *_, c, _g in swept) / len(swept) for layer in layers}
    best = max(layers, key=lambda layer: (dev_curve[layer], -layer))
    start = time.perf_counter()
    per_task: list[dict[str, Any]] = []
    for task, scorer, vectors, dev, dev_few, curve, dev_gold in swept:
        test_gold = [scorer.key(g) for g in task.test_gold]
        desc = (lambda what, name=task.name: f"{name}: {what}") if progress else (lambda what: None)
        test = _sweep(model, scorer, task.test_zero, vectors, [best], cfg, desc("test"))
        test_few = _few(model, scorer, task.test_few, desc("test few-shot")) if task.test_few else None
        zero, tv = test.accuracy(0, test_gold), test.accuracy(1, test_gold)
        few = test_few.accuracy(0, test_gold) if test_few is not None else (None, None)
        per_task.append({
            "task": task.name,
            "labels": task.labels,
            "dev": {
                "n": len(dev_gold), "n_task_vector_prompts": len(task.tv),
                "zero_shot": dev.accuracy(0, dev_gold)[0],
                "few_shot": dev_few.accuracy(0, dev_gold)[0] if dev_few is not None else None,
                "task_vector": {layer: curve[layer][0] for layer in layers},
                "task_vector_restricted": {layer: curve[layer][1] for layer in layers},
                "best_layer_own": max(layers, key=lambda layer, c=curve: (c[layer][0], -layer)),
            },
            "test": {
                "n": len(test_gold), "zero_shot": zero[0], "few_shot": few[0], "task_vector": tv[0],
                "zero_shot_restricted": zero[1], "few_shot_restricted": few[1], "task_vector_restricted": tv[1],
                "gold_first": test_gold[:10],
                "zero_shot_predictions_first": [p[0] for p in test.free[:10]],
                "task_vector_predictions_first": [p[1] for p in test.free[:10]],
            },
            "example_prompts": task.example,
        })
    timings["test_s"] = time.perf_counter() - start
    summary = _summarise(prep, per_task, dev_curve, best)
    summary["timings"] = timings
    directory = _write(prep, summary)
    return PatchResult(directory, summary)


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None


def _summarise(prep: PatchPrepared, per_task: list[dict[str, Any]], dev_layer_acc: dict[int, float], best: int) -> dict[str, Any]:
    test = {key: _mean([t["test"][key] for t in per_task]) for key in
            ("zero_shot", "few_shot", "task_vector", "zero_shot_restricted", "few_shot_restricted", "task_vector_restricted")}
    ratio = test["task_vector"] / test["few_shot"] if test["few_shot"] else None
    return {
        "model": prep.model_ref.spec,
        "n_layers": prep.n_layers,
        "layer_convention": "block_output",
        "mode": prep.config.mode,
        "scale": prep.config.scale,
        "tasks": [t["task"] for t in per_task],
        "labels": prep.labels,
        "single_token_answers": Scorer(prep.tokenizer, prep.labels).single_token,
        "dev": {
            "layers": prep.layers,
            "task_vector": dev_layer_acc,
            "zero_shot": _mean([t["dev"]["zero_shot"] for t in per_task]),
            "few_shot": _mean([t["dev"]["few_shot"] for t in per_task]),
        },
        "best_layer": best,
        "best_layer_depth": best / prep.n_layers,
        "test": {**test, "task_vector_over_few_shot": ratio},
        "per_task": per_task,
    }


def _write(prep: PatchPrepared, summary: dict[str, Any]) -> Path:
    from taskvec.analysis.plotting import new_figure, save_figure  # matplotlib only when writing

    cfg = prep.config
    name = f"{cfg.tag or 'patching'}_{prep.model_ref.short_name}_{datetime.now().strftime('%Y%m%d_%H%M%S')}"
    directory = create_unique_dir(cfg.output_dir, name)
    summary = {**summary, "config": cfg.model_dump(mode="json"), "config_path": str(prep.config_path), "versions": package_versions()}
    save_json(directory / "patching.json", summary)
    plot_patching(summary, directory / "patching.png", new_figure, save_figure)
    return directory


def plot_patching(summary: dict[str, Any], path: Path, new_figure: Any, save_figure: Any) -> Path:
    """Dev accuracy per patched layer, with the zero-shot and few-shot levels as horizontal lines."""
    fig = new_figure(7.5, 4.5)
    ax = fig.add_subplot()
    layers = summary["dev"]["layers"]
    dev = summary["dev"]
    per_task = summary["per_task"]
    if len(per_task) > 1:
        for i, t in enumerate(per_task):
            ax.plot(layers, [t["dev"]["task_vector"][layer] for layer in layers], color="tab:blue", alpha=0.25, lw=1,
                    label="task vector, each task (dev)" if i == 0 else None)
    ax.plot(layers, [dev["task_vector"][layer] for layer in layers], color="tab:blue", lw=2, marker="o", ms=3,
            label="task vector patched at layer (dev" + (f", mean of {len(per_task)} tasks)" if len(per_task) > 1 else ")"))
    ax.axhline(dev["zero_shot"], color="tab:red", ls="--", label=f"zero-shot (dev) {dev['zero_shot']:.2f}")
    if dev["few_shot"] is not None:
        ax.axhline(dev["few_shot"], color="tab:green", ls=":", lw=2, label=f"few-shot (dev) {dev['few_shot']:.2f}")
    best, test = summary["best_layer"], summary["test"]
    ax.plot([best], [test["task_vector"]], marker="*", ms=14, color="black", ls="none",
            label=f"test at best layer {best}: TV {test['task_vector']:.2f}, zero {test['zero_shot']:.2f}"
            + (f", few {test['few_shot']:.2f}" if test["few_shot"] is not None else ""))
    ax.set_xlabel(f"patched layer (output of decoder block; model has {summary['n_layers']})")
    ax.set_ylabel("accuracy (free argmax next token)")
    ax.set_ylim(-0.02, 1.02)
    mode = "replace" if summary["mode"] == "replace" else f"add x{summary['scale']:g}"
    n_dev, n_test = per_task[0]["dev"]["n"], per_task[0]["test"]["n"]
    tag = (summary.get("config") or {}).get("tag")
    ax.set_title(f"Task-vector patching ({mode}), {summary['model']}{f' [{tag}]' if tag else ''}\n{len(per_task)} task(s): {', '.join(summary['tasks'])}; "
                 f"dev {n_dev}, test {n_test} queries per task", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)


def patch(config_path: Path | str, progress: bool = True) -> PatchResult:
    """Run a patch config end to end (see the module docstring); returns where the results went."""
    return run_patching(prepare_patching(Path(config_path)), progress=progress)
