"""A steering run end to end: prepare (no weights), generate every condition in one batched run,
write.

`prepare_steering` checks everything a run needs before any weights load (the steer config, the
prompt config and its prompts, the vector expression and its sessions, the layers and the hidden
size against the model's config); a refusal is one `TaskvecError` line and nothing is written.
`run_steering` then generates the baseline and every condition together (one `Generator` run, each
row carrying its condition), appends each prediction to its condition's predictions.jsonl as it
finishes and writes steering.json, steering.png and the vector.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from taskvec.errors import Interrupted, TaskvecError, sigterm_as_interrupt
from taskvec.evaluation.predictions import PredictionLog, log_path, merge, read_all
from taskvec.evaluation.prepare import EvalPrepared, prepare_evaluation
from taskvec.evaluation.ranks import shard
from taskvec.evaluation.rows import score_prediction
from taskvec.evaluation.stopping import eos_ids, stop_pattern
from taskvec.extraction.distributed import World, joined_world
from taskvec.model.generation import Generator
from taskvec.model.identity import model_identity
from taskvec.model.loading import load_model, load_model_config, resolve_device, resolve_dtype
from taskvec.patching.scoring import AnswerScorer
from taskvec.session.atomic import save_text
from taskvec.session.directories import create_unique_dir
from taskvec.session.expression import parse_vector
from taskvec.session.resume import config_differences
from taskvec.session.vector import TaskVector
from taskvec.steering.conditions import Condition, build_conditions, check_layers
from taskvec.steering.config import SteerConfig, load_steer_config
from taskvec.steering.schema import SteeringResult, VectorInfo
from taskvec.steering.summary import begins_with_answer, summarise
from taskvec.versions import package_versions

Rows = dict[str, dict[int, dict[str, Any]]]  # condition name -> prompt index -> prediction line


@dataclass(frozen=True)
class SteerRun:
    """Where the results went and what steering.json says."""

    directory: Path
    result: SteeringResult


@dataclass
class SteerPrepared:
    """Everything a steering run needs except the weights; building it writes nothing."""

    config_path: Path
    config: SteerConfig
    evaluation: EvalPrepared
    vector: TaskVector
    conditions: list[Condition]
    n_layers: int


def prepare_steering(config_path: Path) -> SteerPrepared:
    """Validate the steer config, render its prompts, build the vector and the conditions (no
    weights)."""
    cfg = load_steer_config(config_path)
    if not cfg.prompt_config.is_file():
        raise TaskvecError(
            f"prompt_config: file '{cfg.prompt_config}' not found; name a prompt config YAML "
            "(paths are taken from where taskvec runs)"
        )
    ev = prepare_evaluation(
        cfg.prompt_config,
        split=cfg.split,
        max_samples=cfg.max_samples,
        batch_size=cfg.batch_size,
        model=cfg.model,
        output_dir=cfg.output_dir,
        device=cfg.device,
        dtype=cfg.dtype,
    )
    vector = parse_vector(cfg.vector, cfg.session_dir, cfg.position)
    if vector.model != model_identity(ev.model_ref.spec):
        raise TaskvecError(
            f"vector: '{cfg.vector}' comes from model '{vector.model}', the prompts run on "
            f"'{ev.model_ref.spec}'; steer with sessions of the same model"
        )
    model_cfg = load_model_config(ev.model_ref)
    hidden = int(getattr(model_cfg, "hidden_size", vector.hidden_size))
    if hidden != vector.hidden_size:
        raise TaskvecError(
            f"vector: hidden size {vector.hidden_size}, the model's is {hidden}; "
            "steer with sessions of the same model"
        )
    n_layers = int(getattr(model_cfg, "num_hidden_layers", 0)) or None
    layers = check_layers(cfg.layers, vector, n_layers)
    conditions = build_conditions(cfg, vector, layers)
    return SteerPrepared(config_path, cfg, ev, vector, conditions, n_layers or max(layers) + 1)


def _vector_info(vector: TaskVector) -> VectorInfo:
    return VectorInfo(
        expression=vector.expression,
        sessions=list(vector.sessions),
        position=vector.position,
        model=vector.model,
        norm_per_layer=vector.norm(),
    )


def _result(prep: SteerPrepared, status: str, rows: Rows, runs: list[dict]) -> SteeringResult:
    cfg, ev = prep.config, prep.evaluation
    baseline, conditions = summarise(prep.conditions, rows, cfg.mode, cfg.where)
    return SteeringResult(
        status=status,
        model=ev.model_ref.spec,
        model_short=ev.model_ref.short_name,
        n_layers=prep.n_layers,
        prompt_config=str(cfg.prompt_config),
        prompt_type=ev.prompt_config.prompt_type,
        n_shot=ev.prompt_config.n_shot,
        split=cfg.split,
        n_prompts=len(ev.ids),
        scoring={
            "accuracy": "the evaluation's parse of the answer (`correct`)",
            "accuracy_prefix": "the generation begins with the whole gold answer at a token "
            "boundary (patching's rule; `correct_prefix`)",
        },
        baseline=baseline,
        conditions=conditions,
        vector=_vector_info(prep.vector),
        config=cfg.model_dump(mode="json"),
        runs=runs,
        versions=package_versions(),
    )


def _new_directory(prep: SteerPrepared) -> Path:
    cfg = prep.config
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    name = f"{cfg.tag or 'steer'}_{prep.evaluation.model_ref.short_name}_{stamp}"
    directory = create_unique_dir(cfg.output_dir, name)
    header = "# Resolved steer config; resume with: taskvec steer --resume THIS_DIRECTORY\n"
    save_text(directory / "config.yaml", header + yaml.safe_dump(cfg.model_dump(mode="json")))
    prep.vector.save(directory / "vector.safetensors")
    return directory


def _logs(prep: SteerPrepared, directory: Path, rank: int) -> dict[str, PredictionLog]:
    """Each condition's predictions log of this rank (rank r > 0: its own part)."""
    logs = {}
    for c in prep.conditions:
        (directory / "conditions" / c.name).mkdir(parents=True, exist_ok=True)
        logs[c.name] = PredictionLog(log_path(directory / "conditions" / c.name, rank))
    return logs


def _read_rows(prep: SteerPrepared, directory: Path, repair: bool = True) -> Rows:
    """Every condition's finished predictions, every rank's part included."""
    return {c.name: read_all(directory / "conditions" / c.name, repair) for c in prep.conditions}


def _resume_rows(prep: SteerPrepared, directory: Path) -> tuple[Rows, list[dict]]:
    """The sound predictions of `directory` and its earlier runs, after checking it is this
    config's."""
    saved = SteeringResult.load(directory)
    if saved.status == "complete":
        raise TaskvecError(f"--resume: '{directory}' is already complete; nothing to resume")
    diffs = config_differences(saved.config, prep.config.model_dump(mode="json"))
    if diffs:
        raise TaskvecError(
            f"--resume: the config differs from '{directory.name}' in {len(diffs)} field(s): "
            f"{'; '.join(diffs[:5])}; resume with its own config "
            f"(taskvec steer --resume {directory})"
        )
    kept = TaskVector.load(directory / "vector.safetensors")
    if any(
        not kept.vectors[k].equal(v) for k, v in prep.vector.vectors.items() if k in kept.vectors
    ):
        raise TaskvecError(
            f"--resume: the sessions of '{prep.config.vector}' changed since '{directory.name}' "
            "began; start a new run"
        )
    ev, rows = prep.evaluation, _read_rows(prep, directory)
    for c in prep.conditions:
        path = directory / "conditions" / c.name / "predictions.jsonl"
        merge(path.parent, rows[c.name])  # a distributed run's parts in one file
        for idx, row in rows[c.name].items():
            if idx >= len(ev.samples) or row.get("prompt") != ev.prompts[idx].text:
                raise TaskvecError(
                    f"--resume: {path} holds a prediction for another prompt (sample {idx}); "
                    "the dataset or tokenizer changed since, so start a new run"
                )
    return rows, saved.runs


def _generate(
    prep: SteerPrepared,
    model: Any,
    rows: Rows,
    logs: dict[str, PredictionLog],
    progress: bool,
    world: World,
) -> int:
    """Generate every (condition, prompt) not yet in `rows` and this rank's (a condition's prompts
    are dealt like evaluation's, each condition its own prefix plan), in one batched run;
    returns how many ran."""
    ev, cfg = prep.evaluation, prep.config
    n, names = len(ev.ids), [c.name for c in prep.conditions]
    stop = stop_pattern(ev.prompt_config.answer_format, ev.samples)
    golds = [s.answer_text for s in ev.samples]
    scorer = AnswerScorer(ev.tokenizer, golds, ev.prompt_config.dataset.case_sensitive)
    settings = ev.prompt_config.generation
    generator = Generator(
        model, settings, eos_ids(model, ev.tokenizer), cfg.batch_size, ev.tokenizer, stop
    )
    ids = [p for _ in prep.conditions for p in ev.ids]
    steers = [c.steer for c in prep.conditions for _ in ev.ids]
    finished = {c * n + i for c, name in enumerate(names) for i in rows[name]}
    plans = [range(c * n, (c + 1) * n) for c in range(len(names))]
    skip = shard(ids, finished, world, True, settings.max_new_tokens, plans).skip
    done_count = 0
    bar = tqdm(total=len(ids) - len(skip), unit="row", desc="steer", disable=not progress)
    for done in generator.run(ids, skip=skip, steers=steers):
        c, i = divmod(done.idx, n)
        row = score_prediction(i, ev, done, stop)
        row["correct_prefix"] = begins_with_answer(scorer, ev.tokenizer, done.tokens, golds[i])
        row["condition"] = names[c]
        logs[names[c]].append(row)
        rows[names[c]][i] = row
        done_count += 1
        bar.update(1)
    bar.close()
    return done_count


def run_steering(
    prep: SteerPrepared, progress: bool = True, resume: Path | None = None
) -> SteerRun:
    """Load the weights, generate the baseline and every condition, score, write the results
    directory.

    Under torchrun the (condition, prompt) pairs are dealt to the ranks; each appends to its own
    part of every condition's predictions, and rank 0 merges them and writes steering.json."""
    with joined_world(resolve_device(prep.config.device), prep.config.device_map) as (
        world,
        device,
    ):
        return _run(prep, progress, resume, world, device)


def _run(
    prep: SteerPrepared, progress: bool, resume: Path | None, world: World, device: Any
) -> SteerRun:
    cfg = prep.config
    rows, runs = (
        world.on_main(lambda: _resume_rows(prep, resume))
        if resume is not None
        else ({c.name: {} for c in prep.conditions}, [])
    )
    start = time.perf_counter()
    dtype = resolve_dtype(cfg.dtype, device)
    model = load_model(prep.evaluation.model_ref, dtype, device, cfg.device_map)
    directory = resume if resume is not None else world.on_main(lambda: _new_directory(prep))
    logs = _logs(prep, directory, world.rank)
    run: dict[str, Any] = {
        "started_at": datetime.now().isoformat(timespec="seconds"),
        "world_size": world.size,
    }
    runs = [*runs, run]
    if world.main:
        _result(prep, "running", rows, runs).save(directory)
    loaded = time.perf_counter()
    try:
        with sigterm_as_interrupt():
            mine = _generate(prep, model, rows, logs, progress and world.main, world)
            for log in logs.values():
                log.close()
            counts = world.gather(mine)  # also waits until every rank's predictions are written
    except BaseException as exc:
        for log in logs.values():
            log.close()
        done = _read_rows(prep, directory, repair=False) if world.main else rows
        raise _stopped(exc, prep, directory, done, runs, world.main) from exc
    run.update(load_s=loaded - start, generate_s=time.perf_counter() - loaded)
    run.update(generated=sum(counts), generated_per_rank=counts)
    return SteerRun(directory, world.on_main(lambda: _complete(prep, directory, runs)))


def _complete(prep: SteerPrepared, directory: Path, runs: list[dict]) -> SteeringResult:
    """Rank 0, once every rank is done: each condition's predictions in one file in sample
    order, steering.json, steering.png."""
    rows = _read_rows(prep, directory)
    for c in prep.conditions:
        merge(directory / "conditions" / c.name, rows[c.name])
    result = _result(prep, "complete", rows, runs)
    result.save(directory)
    from taskvec.steering.plot import plot_steering  # matplotlib only when writing

    plot_steering(result, directory / "steering.png")
    return result


def _stopped(
    exc: BaseException,
    prep: SteerPrepared,
    directory: Path,
    rows: Rows,
    runs: list[dict],
    main: bool = True,
) -> TaskvecError:
    """Record how the run ended (rank 0); the one-line error says what is kept and how to
    resume."""
    interrupted = isinstance(exc, (KeyboardInterrupt, OSError))
    try:
        if main:
            _result(prep, "interrupted" if interrupted else "failed", rows, runs).save(directory)
    except OSError:
        pass  # a full disk may refuse even this; the predictions say what is done
    done = sum(map(len, rows.values()))
    kept = f"{done} of {len(prep.conditions) * len(prep.evaluation.ids)} generations are saved"
    hint = f"resume with: taskvec steer --resume {directory}"
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted(f"interrupted; {kept}; {hint}")
    if isinstance(exc, TaskvecError):
        return TaskvecError(f"{exc}; {kept}")
    return TaskvecError(f"the run failed ({exc.__class__.__name__}: {exc}); {kept}; {hint}")


def steer(
    config_path: Path | None = None, progress: bool = True, resume: Path | None = None
) -> SteerRun:
    """Run a steer config end to end (or finish `resume`, a steering results directory, with its own
    config.yaml unless `config_path` is given); returns the results directory and steering.json."""
    if config_path is None and resume is None:
        raise TaskvecError("--config: pass a steer config YAML, or --resume DIR to continue a run")
    if resume is not None:
        SteeringResult.load(resume)  # a directory that is not a steering run: one line
    path = config_path if config_path is not None else resume / "config.yaml"  # type: ignore[operator]
    return run_steering(prepare_steering(path), progress, resume)
