"""Task-vector patching (Hendel et al. 2023, "In-Context Learning Creates Task Vectors").

The task vector of layer L is the mean last-token output of block L over few-shot
prompts. Run a zero-shot prompt and, during its prefill, replace the hidden state of
its last token at the output of block L by that vector (or add `scale` times it); if the
model now answers like the few-shot prompt, the vector carried the task. Layers are swept
on a dev split; each task is tested at its own best dev layer and at the best layer of
the mean curve (`layer_choice` picks the headline), next to zero-shot and few-shot
accuracy. A layer is "best" only if it beats zero-shot on dev; otherwise the sweep
reports no effect. Answers are scored by their greedy continuation (`scoring.py`).

Speed (`batched.py`): prompts sharing a prefix (the demonstrations, the system prompt)
reuse its KV cache via the extraction engine's prefix tree; a batch of zero-shot
prompts runs once up to its last tokens, which then run as 1 + n_layers rows each, one
patched per swept layer; greedy decoding goes on only while a row can still be right.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from taskvec.data.base import Sample
from taskvec.errors import TaskvecError
from taskvec.model.batched import GreedyRunner, RunSpec
from taskvec.model.intervene import mean_last_token_vectors
from taskvec.model.loading import ModelRef, load_model, load_model_config, load_tokenizer, resolve_device, resolve_dtype, resolve_model
from taskvec.patching.config import PatchConfig, load_patch_config
from taskvec.patching.scoring import AnswerScorer
from taskvec.positions import VectorKey
from taskvec.prompts.build import build_prompts, select_samples
from taskvec.prompts.config import PromptConfig, load_prompt_config
from taskvec.session.store import check_writable, create_unique_dir, save_json
from taskvec.versions import package_versions

# --- the run ---------------------------------------------------------------------------


@dataclass
class TaskPrompts:
    """One task's token ids: few-shot prompts for the vector, dev and test queries zero- and few-shot, and their ids."""

    name: str
    tv: list[list[int]]
    dev_zero: list[list[int]]
    dev_few: list[list[int]]
    dev_gold: list[str]
    test_zero: list[list[int]]
    test_few: list[list[int]]
    test_gold: list[str]
    ids: dict[str, list[str]] = field(default_factory=dict)
    case_sensitive: bool = True
    example: dict[str, str] = field(default_factory=dict)


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
    example = {"zero_shot": str(tokenizer.decode(test_zero[0]))}
    if test_few:
        example["few_shot"] = str(tokenizer.decode(test_few[0]))
    ids = {"vector": [s.id for s in tv_s], "dev": [s.id for s in dev_s], "test": [s.id for s in test_s]}
    _check_disjoint(ids, cfg)
    return TaskPrompts(task or zero.dataset.name or "default", tv_ids, dev_zero, dev_few, [s.answer_text for s in dev_s],
                       test_zero, test_few, [s.answer_text for s in test_s], ids, zero.dataset.case_sensitive, example)


def _check_disjoint(ids: dict[str, list[str]], cfg: PatchConfig) -> None:
    """Refuse vector, dev and test queries that share a sample id (the same row would be both learned from and scored)."""
    for a, b in (("vector", "test"), ("dev", "test"), ("vector", "dev")):
        shared = sorted(set(ids[a]) & set(ids[b]))
        if shared:
            raise TaskvecError(f"{a} and {b} queries share {len(shared)} sample id(s) (e.g. '{shared[0]}'; dev_split "
                               f"'{cfg.dev_split}', test_split '{cfg.test_split}'); use disjoint splits (one file given as "
                               "`path` alone is split into train and test)")


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
        from taskvec.session.reader import load_session

        session = load_session(cfg.task_vectors, cfg.session_dir)
        available = [layer for layer in session.layers if str(VectorKey(layer, "last")) in session.keys]
        if not available:
            raise TaskvecError(f"task_vectors: session '{session.name}' has no `last` position vectors; extract with token_positions: [last]")
        wanted = _normalise_layers(cfg.layers, n_layers, "layers") if cfg.layers is not None else available
        missing = [layer for layer in wanted if layer not in available]
        if missing:
            raise TaskvecError(f"layers: session '{session.name}' has no vectors for layer(s) {missing}; use some of {available} or re-extract")
        session_vectors = {layer: session.mean(str(VectorKey(layer, "last"))).float() for layer in wanted}
        if session_vectors[wanted[0]].numel() != hidden:
            raise TaskvecError(f"task_vectors: session '{session.name}' holds {session_vectors[wanted[0]].numel()}-dim vectors but the model's "
                               f"hidden size is {hidden}; use a session extracted from the same model")
        layers = wanted
    else:
        layers = _normalise_layers(cfg.layers, n_layers, "layers") if cfg.layers is not None else list(range(n_layers))
    tokenizer = load_tokenizer(ref)
    names: list[str | None] = list(cfg.tasks) if cfg.tasks else [None]
    tasks = [_task_prompts(cfg, base, task, tokenizer) for task in names]
    return PatchPrepared(config_path, cfg, ref, tokenizer, n_layers, layers, tasks, session_vectors)


@dataclass(frozen=True)
class Scores:
    """Per prompt and row (0 = unpatched, 1+i = patched at the i-th layer run): correct or not, restricted label, prediction."""

    correct: list[list[bool]]
    restricted: list[list[bool | None]]
    predictions: list[list[str]]

    def accuracy(self, row: int) -> float:
        return sum(c[row] for c in self.correct) / len(self.correct) if self.correct else math.nan

    def restricted_accuracy(self, row: int) -> float | None:
        values = [r[row] for r in self.restricted]
        return None if not values or values[0] is None else sum(bool(v) for v in values) / len(values)


def _score(runner: GreedyRunner, scorer: AnswerScorer, prompts: list[list[int]], gold: list[str],
           layers: list[int], vectors: dict[int, torch.Tensor] | None, cfg: PatchConfig) -> Scores:
    """Run `prompts` (patched at `layers` if `vectors`) and score every row against `gold`."""
    spec = RunSpec(layers if vectors is not None else [], vectors, cfg.mode, cfg.scale, scorer.max_new_tokens, scorer.watch)
    rows = runner.run(prompts, spec, lambda i, text: scorer.keep(gold[i], text))
    correct = [[scorer.correct(g, r.text) for r in rs] for g, rs in zip(gold, rows, strict=True)]
    restricted = [[None if (lab := scorer.restricted(r.watched)) is None else lab == g for r in rs] for g, rs in zip(gold, rows, strict=True)]
    return Scores(correct, restricted, [[scorer.prediction(r.text) for r in rs] for rs in rows])


def best_layer(curve: dict[int, float], zero_shot: float) -> int | None:
    """The layer with the highest dev accuracy (ties: the shallower), or None when none beats zero-shot (no effect)."""
    layer = max(curve, key=lambda k: (curve[k], -k))
    return layer if curve[layer] > zero_shot else None


@dataclass
class TaskRun:
    """One task's dev sweep and what the test needs."""

    task: TaskPrompts
    scorer: AnswerScorer
    vectors: dict[int, torch.Tensor]
    dev: Scores
    dev_few: Scores | None
    curve: dict[int, float]

    @property
    def best(self) -> int | None:
        return best_layer(self.curve, self.dev.accuracy(0))


def _dev(model: PreTrainedModel, runner: GreedyRunner, prep: PatchPrepared, task: TaskPrompts) -> TaskRun:
    """The task vector (few-shot prompts' mean, prefix-shared) and the dev sweep over every layer."""
    cfg, layers = prep.config, prep.layers
    scorer = AnswerScorer(prep.tokenizer, task.dev_gold + task.test_gold, task.case_sensitive)
    vectors = prep.session_vectors or mean_last_token_vectors(model, task.tv, layers, cfg.batch_size, cfg.max_batch_tokens)
    dev = _score(runner, scorer, task.dev_zero, task.dev_gold, layers, vectors, cfg)
    dev_few = _score(runner, scorer, task.dev_few, task.dev_gold, [], None, cfg) if task.dev_few else None
    return TaskRun(task, scorer, vectors, dev, dev_few, {layer: dev.accuracy(1 + i) for i, layer in enumerate(layers)})


def _test(runner: GreedyRunner, run: TaskRun, shared: int | None, cfg: PatchConfig) -> dict[str, Any]:
    """Test accuracies: zero-shot, few-shot, and the task vector at the task's own and at the shared layer."""
    task, own = run.task, run.best
    layers = sorted({layer for layer in (own, shared) if layer is not None})
    test = _score(runner, run.scorer, task.test_zero, task.test_gold, layers, run.vectors, cfg)
    few = _score(runner, run.scorer, task.test_few, task.test_gold, [], None, cfg) if task.test_few else None
    zero = test.accuracy(0)

    def at(layer: int | None) -> float:  # no effect: nothing is patched, the answer is the zero-shot one
        return zero if layer is None else test.accuracy(1 + layers.index(layer))

    chosen = own if cfg.layer_choice == "per_task" else shared
    col = 1 + layers.index(chosen) if chosen is not None else 0
    return {
        "n": len(task.test_gold), "zero_shot": zero, "few_shot": few.accuracy(0) if few else None,
        "layer": chosen, "task_vector": at(chosen), "task_vector_per_task": at(own), "task_vector_shared": at(shared),
        "zero_shot_restricted": test.restricted_accuracy(0), "few_shot_restricted": few.restricted_accuracy(0) if few else None,
        "task_vector_restricted": test.restricted_accuracy(col),
        "gold_first": task.test_gold[:10],
        "zero_shot_predictions_first": [p[0] for p in test.predictions[:10]],
        "task_vector_predictions_first": [p[col] for p in test.predictions[:10]],
        "few_shot_predictions_first": [p[0] for p in few.predictions[:10]] if few else None,
    }


def _task_summary(run: TaskRun, layers: list[int], test: dict[str, Any]) -> dict[str, Any]:
    task = run.task
    return {
        "task": task.name,
        "scoring": run.scorer.rule,
        "single_token_answers": run.scorer.single_token,
        "restricted_labels": run.scorer.labels or None,
        "dev": {
            "n": len(task.dev_gold), "n_task_vector_prompts": len(task.tv),
            "zero_shot": run.dev.accuracy(0), "few_shot": run.dev_few.accuracy(0) if run.dev_few else None,
            "task_vector": run.curve,
            "task_vector_restricted": {layer: run.dev.restricted_accuracy(1 + i) for i, layer in enumerate(layers)},
            "best_layer": run.best, "effect": run.best is not None,
        },
        "test": test,
        "sample_ids": task.ids,
        "example_prompts": task.example,
    }


def run_patching(prep: PatchPrepared, progress: bool = True) -> PatchResult:
    """Load the model, sweep the layers on dev, test at the chosen layers, write patching.json and patching.png."""
    cfg, layers = prep.config, prep.layers
    timings: dict[str, float] = {}
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    model = load_model(prep.model_ref, resolve_dtype(cfg.dtype, device), device)
    runner = GreedyRunner(model, prep.tokenizer, cfg.batch_size, cfg.max_batch_tokens)
    timings["load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    runs = [_dev(model, runner, prep, task) for task in tqdm(prep.tasks, desc="dev sweep", disable=not progress, leave=False)]
    timings["dev_s"] = time.perf_counter() - start
    dev_curve = {layer: sum(r.curve[layer] for r in runs) / len(runs) for layer in layers}
    shared = best_layer(dev_curve, sum(r.dev.accuracy(0) for r in runs) / len(runs))
    start = time.perf_counter()
    per_task = [_task_summary(r, layers, _test(runner, r, shared, cfg)) for r in tqdm(runs, desc="test", disable=not progress, leave=False)]
    timings["test_s"] = time.perf_counter() - start
    summary = _summarise(prep, per_task, dev_curve, shared)
    summary["timings"] = timings
    return PatchResult(_write(prep, summary), summary)


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None


ICL_THRESHOLD = 0.5  # tasks whose few-shot test accuracy reaches this are the ones the model learns in context


def _means(per_task: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean test accuracies over `per_task`, and TV / few-shot."""
    keys = ("zero_shot", "few_shot", "task_vector", "task_vector_per_task", "task_vector_shared",
            "zero_shot_restricted", "few_shot_restricted", "task_vector_restricted")
    means: dict[str, Any] = {key: _mean([t["test"][key] for t in per_task]) for key in keys}
    means["task_vector_over_few_shot"] = means["task_vector"] / means["few_shot"] if means["few_shot"] else None
    means["n_tasks"] = len(per_task)
    return means


def _summarise(prep: PatchPrepared, per_task: list[dict[str, Any]], dev_curve: dict[int, float], shared: int | None) -> dict[str, Any]:
    learned = [t for t in per_task if (t["test"]["few_shot"] or 0.0) >= ICL_THRESHOLD]
    return {
        "model": prep.model_ref.spec,
        "n_layers": prep.n_layers,
        "layer_convention": "block_output",
        "mode": prep.config.mode,
        "scale": prep.config.scale,
        "layer_choice": prep.config.layer_choice,
        "tasks": [t["task"] for t in per_task],
        "dev": {
            "layers": prep.layers,
            "task_vector": dev_curve,
            "zero_shot": _mean([t["dev"]["zero_shot"] for t in per_task]),
            "few_shot": _mean([t["dev"]["few_shot"] for t in per_task]),
        },
        "best_layer": shared,
        "best_layer_depth": shared / prep.n_layers if shared is not None else None,
        "effect": shared is not None,
        "best_layers_per_task": {t["task"]: t["dev"]["best_layer"] for t in per_task},
        "test": _means(per_task),
        "test_learned_in_context": {**_means(learned), "threshold": ICL_THRESHOLD, "tasks": [t["task"] for t in learned]},
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


def _layer_text(layer: int | None) -> str:
    return "no effect" if layer is None else str(layer)


def plot_patching(summary: dict[str, Any], path: Path, new_figure: Any, save_figure: Any) -> Path:
    """Dev accuracy per patched layer, one line per task, the mean in bold; the legend sits outside the axes."""
    from matplotlib import colormaps

    per_task, dev, layers = summary["per_task"], summary["dev"], summary["dev"]["layers"]
    fig = new_figure(11.0, 5.0)
    ax = fig.add_subplot()
    colours = colormaps["tab20"](range(len(per_task)))
    for colour, t in zip(colours, per_task, strict=True):
        ax.plot(layers, [t["dev"]["task_vector"][layer] for layer in layers], color=colour, lw=1.2, alpha=0.9,
                label=f"{t['task']} (few {t['dev']['few_shot'] or 0:.2f}, zero {t['dev']['zero_shot']:.2f})")
    if len(per_task) > 1:
        ax.plot(layers, [dev["task_vector"][layer] for layer in layers], color="black", lw=2.5, label="mean over tasks")
    ax.axhline(dev["zero_shot"], color="tab:red", ls="--", lw=1, label=f"zero-shot, mean {dev['zero_shot']:.2f}")
    if dev["few_shot"] is not None:
        ax.axhline(dev["few_shot"], color="tab:green", ls=":", lw=2, label=f"few-shot, mean {dev['few_shot']:.2f}")
    best, test = summary["best_layer"], summary["test"]
    if best is not None:  # a flat sweep has no best layer: nothing to star
        ax.plot([best], [dev["task_vector"][best]], marker="*", ms=14, color="black", ls="none",
                label=f"best mean layer {best} (test TV {test['task_vector_shared']:.2f})")
    ax.set_xlabel(f"patched layer (output of decoder block; model has {summary['n_layers']})")
    ax.set_ylabel("dev accuracy (greedy answer)")
    ax.set_ylim(-0.02, 1.02)
    mode = "replace" if summary["mode"] == "replace" else f"add x{summary['scale']:g}"
    tag = (summary.get("config") or {}).get("tag")
    ax.set_title(f"Task-vector patching ({mode}), {summary['model']}{f' [{tag}]' if tag else ''}\n"
                 f"{len(per_task)} task(s); best mean layer: {_layer_text(best)}", fontsize=10)
    ax.grid(alpha=0.3)
    fig.legend(fontsize=7, loc="outside right upper")
    return save_figure(fig, path)


def format_summary(summary: dict[str, Any]) -> str:
    """The CLI's report: the mean dev curve, then per task and mean test accuracies."""

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    lines = [f"{'layer':>5}  {'dev TV (mean)':>13}"]
    for layer in summary["dev"]["layers"]:
        mark = "  <- best" if layer == summary["best_layer"] else ""
        lines.append(f"{layer:>5}  {summary['dev']['task_vector'][layer]:>13.3f}{mark}")
    if summary["best_layer"] is None:
        lines.append("no effect: no layer's mean dev accuracy beats zero-shot")
    lines.append(f"{'task':<22} {'zero':>5} {'few':>5} {'TV':>5} {'layer':>9} {'TV shared':>9}")
    for t in summary["per_task"]:
        s = t["test"]
        lines.append(f"{t['task']:<22} {fmt(s['zero_shot']):>5} {fmt(s['few_shot']):>5} {fmt(s['task_vector']):>5} "
                     f"{_layer_text(s['layer']):>9} {fmt(s['task_vector_shared']):>9}")
    for label, m in (("mean, all tasks", summary["test"]), (f"mean, few-shot >= {ICL_THRESHOLD}", summary["test_learned_in_context"])):
        name = f"{label} ({m['n_tasks']})"
        lines.append(f"{name:<22} {fmt(m['zero_shot']):>5} {fmt(m['few_shot']):>5} {fmt(m['task_vector']):>5} "
                     f"{'':>9} {fmt(m['task_vector_shared']):>9}  TV/few {fmt(m['task_vector_over_few_shot'])}")
    lines.append(f"layer choice: {summary['layer_choice']}; shared best layer {_layer_text(summary['best_layer'])} of {summary['n_layers']}")
    return "\n".join(lines)


def patch(config_path: Path | str, progress: bool = True) -> PatchResult:
    """Run a patch config end to end (see the module docstring); returns where the results went."""
    return run_patching(prepare_patching(Path(config_path)), progress=progress)
