"""compare, project and correlate on sessions the real pipeline wrote, checked against direct
torch computations."""

from __future__ import annotations

import importlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.image import imread

from taskvec.analysis import compare, correlate, project
from taskvec.cli import main
from taskvec.errors import TaskvecError
from taskvec.session.reader import Session, load_session
from tests.tiny_sessions import copy_session, edit_metadata, extract_sessions, sample_records

N_SAMPLES = 16


@pytest.fixture(scope="module")
def sessions(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str]]:
    return extract_sessions(
        tmp_path_factory.mktemp("sessions"), tiny_model_dir, max_samples=N_SAMPLES
    )


@pytest.fixture
def cot(sessions: tuple[Path, list[str]]) -> Session:
    return load_session(sessions[1][0], sessions[0])


@pytest.fixture
def vanilla(sessions: tuple[Path, list[str]]) -> Session:
    return load_session(sessions[1][1], sessions[0])


def _assert_image(path: Path) -> None:
    image = imread(path)
    assert image.shape[0] >= 300 and image.shape[1] >= 400, (path, image.shape)
    assert image.std() > 0.01  # not a blank canvas


def _write_predictions(path: Path, correct: dict[str, bool]) -> Path:
    lines = [
        json.dumps({"sample_id": sid, "correct": ok, "generation": "The answer is 1.", "gold": 1.0})
        for sid, ok in correct.items()
    ]
    path.mkdir(parents=True, exist_ok=True)
    (path / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    return path


def test_compare_matches_direct_torch(cot: Session, vanilla: Session, tmp_path: Path) -> None:
    result = compare([cot, vanilla], tmp_path)
    table = result.table
    assert len(table) == 2 * len(cot.keys)  # both ordered pairs per key
    raw_a = sample_records(cot.raw_dir)
    tv_b = torch.load(vanilla.task_vector_dir / "task_vectors.pt", weights_only=True)
    tv_a = torch.load(cot.task_vector_dir / "task_vectors.pt", weights_only=True)
    for row in table[table.session_a == "cot_5shot_train"].itertuples():
        cos = torch.nn.functional.cosine_similarity(tv_a[row.key], tv_b[row.key], dim=0).item()
        per_sample = torch.nn.functional.cosine_similarity(
            torch.stack([r[row.key] for r in raw_a]), tv_b[row.key][None], dim=1
        )
        assert row.cos_means == pytest.approx(cos, abs=1e-5)
        assert row.samples_cos_mean == pytest.approx(per_sample.mean().item(), abs=1e-5)
        # even n: midpoint
        assert row.q50 == pytest.approx(per_sample.median().item(), abs=1e-4) or N_SAMPLES % 2 == 0
        assert row.samples_cos_std == pytest.approx(per_sample.std().item(), abs=1e-5)
    assert (tmp_path / "compare.csv").exists()
    assert [p.name for p in result.plots] == [
        "compare_similarity.png",
        "compare_per_sample.png",
        "compare_separation.png",
    ]
    for path in result.plots:
        _assert_image(path)


def test_compare_with_itself_is_one_and_three_sessions_add_a_heatmap(
    cot: Session, vanilla: Session, tmp_path: Path
) -> None:
    same = compare([cot, load_session(cot.task_vector_dir)], tmp_path / "same").table
    assert np.allclose(same.cos_means, 1.0) and np.allclose(
        same.samples_cos_mean, same.own_cos_mean
    )
    assert set(same.session_a) == {"cot_5shot_train #1", "cot_5shot_train #2"}
    three = compare([cot, vanilla, cot], tmp_path / "three")
    assert len(three.table) == 6 * len(cot.keys)
    assert (tmp_path / "three" / "compare_heatmap.png") in three.plots
    _assert_image(tmp_path / "three" / "compare_heatmap.png")


def test_heatmap_values_fit_their_cells_with_many_layers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10 layers, 2 positions, long labels: panels wrap (at most 5 a row) and every cell value
    has room in its cell."""
    # the package exports the function under the module's name
    cmp = importlib.import_module("taskvec.analysis.compare")

    labels = ["past_tense_chat_0shot", "past_tense_chat_5shot", "past_tense_cot_5shot"]
    layers = [0, 5, 10, 15, 18, 20, 21, 22, 25, 29]
    rows = [
        {
            "layer": layer,
            "position": p,
            "session_a": a,
            "session_b": b,
            "cos_means": 0.7 + 0.01 * layer,
        }
        for layer in layers
        for p in ("last", "-2")
        for a in labels
        for b in labels
        if a != b
    ]
    figures: list[Any] = []
    monkeypatch.setattr(cmp, "save_figure", lambda fig, path: figures.append(fig) or path)
    cmp._plot_heatmaps(
        pd.DataFrame(rows),
        [f"layer_{la}_pos_{p}" for la in layers for p in ("last", "-2")],
        labels,
        tmp_path,
    )
    (fig,) = figures
    fig.savefig(tmp_path / "heatmap.png")  # lays the figure out as the saved PNG is
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 20 and len({round(ax.get_position().x0, 3) for ax in panels}) == 5
    for ax in panels:
        cell = ax.get_window_extent().width / len(labels)
        widest = max(text.get_window_extent().width for text in ax.texts)
        assert widest <= 0.8 * cell, (
            f"cell values ({widest:.0f} px) crowd their cells ({cell:.0f} px)"
        )


def test_compare_needs_a_shared_key(
    cot: Session, sessions: tuple[Path, list[str]], tmp_path: Path
) -> None:
    copy = copy_session(sessions[0], cot.name, tmp_path)
    edit_metadata(copy / "task_vector" / cot.name, keys=["layer_1_pos_7"])
    with pytest.raises(
        TaskvecError, match=r"share no layer/position key.*layer_1_pos_7.*layer_0_pos_last"
    ):
        compare([load_session(cot.name, copy), cot], tmp_path)
    with pytest.raises(TaskvecError, match="at least two"):
        compare([cot], tmp_path)


def test_project_pca(cot: Session, vanilla: Session, tmp_path: Path) -> None:
    # -1 is the last block, 3; default position last
    result = project([cot, vanilla], layer=-1, position=None, out=tmp_path)
    table = result.table
    assert len(table) == 2 * N_SAMPLES + 2 and list(table.kind).count("mean") == 2
    assert result.plots == (tmp_path / "project_layer_3_pos_last.png",)
    _assert_image(tmp_path / "project_layer_3_pos_last.png")
    ratio = result.explained_variance_ratio
    assert 0 < ratio[1] <= ratio[0] < 1
    stacked = torch.cat(
        [cot.vectors("layer_3_pos_last"), vanilla.vectors("layer_3_pos_last")]
    ).double()
    centred = stacked - stacked.mean(0)
    samples = table[table.kind == "sample"][["pc1", "pc2"]].to_numpy()
    assert np.allclose(
        (samples**2).sum(0), (torch.linalg.svdvals(centred)[:2] ** 2).numpy(), rtol=1e-6
    )
    with pytest.raises(
        TaskvecError, match=r"no vectors at layer 1, position last; it has layers \[0, 2, 3\]"
    ):
        project([cot], layer=1, position="last", out=tmp_path)


def test_correlate_joins_by_sample_id(cot: Session, tmp_path: Path) -> None:
    rng = random.Random(0)
    truth = {sid: rng.random() < 0.5 for sid in cot.sample_ids}
    base = correlate(cot, _write_predictions(tmp_path / "plain", truth), tmp_path / "plots")
    shuffled = list(truth.items())
    rng.shuffle(shuffled)
    extra = dict(shuffled + [("test_7", True), ("other_3", False)])  # unrelated ids are ignored
    moved = correlate(cot, _write_predictions(tmp_path / "shuffled", extra), tmp_path / "plots2")
    pd.testing.assert_frame_equal(base.table, moved.table)
    assert (moved.matched, moved.session_only, moved.predictions_only) == (N_SAMPLES, 0, 2)
    partial = correlate(
        cot, _write_predictions(tmp_path / "partial", dict(shuffled[:10])), tmp_path / "plots3"
    )
    assert (partial.matched, partial.session_only) == (10, N_SAMPLES - 10)
    assert (partial.table.n == 10).all()
    for path in base.plots:
        _assert_image(path)
    cos = torch.nn.functional.cosine_similarity(
        cot.vectors("layer_0_pos_last"), cot.mean("layer_0_pos_last")[None], dim=1
    )
    ok = torch.tensor([truth[sid] for sid in cot.sample_ids])
    row = base.table.set_index("key").loc["layer_0_pos_last"]
    assert row.cos_correct == pytest.approx(cos[ok].mean().item(), abs=1e-6)
    assert row.cos_incorrect == pytest.approx(cos[~ok].mean().item(), abs=1e-6)
    assert row.baseline_acc == pytest.approx(max(ok.sum().item(), (~ok).sum().item()) / N_SAMPLES)


def test_correlate_errors(cot: Session, tmp_path: Path) -> None:
    with pytest.raises(TaskvecError, match="share no sample id.*test_0"):
        correlate(
            cot, _write_predictions(tmp_path / "other", {"test_0": True, "test_1": False}), tmp_path
        )
    with pytest.raises(TaskvecError, match="no predictions file"):
        correlate(cot, tmp_path / "missing", tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "predictions.jsonl").write_text(
        '{"sample_id": "train_0", "correct": "yes"}\n'
    )
    with pytest.raises(TaskvecError, match=r"predictions.jsonl:1: each line needs"):
        correlate(cot, tmp_path / "bad", tmp_path)
    one_class = correlate(
        cot, _write_predictions(tmp_path / "all", dict.fromkeys(cot.sample_ids, True)), tmp_path
    )
    assert one_class.table.probe_acc.isna().all() and one_class.table.baseline_acc.eq(1.0).all()
    assert "needs at least two of each class" in one_class.note


def test_probe_finds_a_linear_signal(cot: Session, tmp_path: Path) -> None:
    """Correctness defined by the side of a direction (the first principal axis of the standardised
    vectors) is predicted far above the baseline and the controls there."""
    key = "layer_2_pos_last"
    vectors = cot.vectors(key).double()
    scaled = (vectors - vectors.mean(0)) / vectors.std(0)
    values = scaled @ torch.linalg.svd(scaled, full_matrices=False).Vh[0]
    truth = {sid: bool(v > values.median()) for sid, v in zip(cot.sample_ids, values)}
    result = correlate(cot, _write_predictions(tmp_path, truth), tmp_path)
    table = result.table.set_index("key")
    assert table.loc[key, "probe_acc"] >= table.loc[key, "baseline_acc"] + 0.25
    assert table.loc[key, "folds"] == 5
    assert table.loc[key, "auc"] > 0.8 and table.loc[key, "p_value"] < 0.05  # 16 samples
    assert table.loc[key, "auc"] > table.loc[key, "shuffled_auc_q95"]
    assert table.loc[key, "verdict"] == "beats controls"
    assert (table.forced == "").all() and result.forced == ""


def test_correlate_on_noise_does_not_beat_its_controls(cot: Session, tmp_path: Path) -> None:
    rng = random.Random(1)
    truth = {sid: rng.random() < 0.5 for sid in cot.sample_ids}
    table = correlate(cot, _write_predictions(tmp_path, truth), tmp_path, permutations=30).table
    run = table[table.folds > 0]
    assert len(run) and (run.verdict != "beats controls").mean() >= 0.8
    assert run.p_value.median() > 0.1 and 0.3 < run.auc.mean() < 0.7
    assert {"surface_auc", "shuffled_auc_q05", "n_incorrect"} <= set(table.columns)


def test_forced_join_is_marked_everywhere(
    cot: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = {sid: i % 2 == 0 for i, sid in enumerate(cot.sample_ids)}
    results = _write_predictions(tmp_path / "r", truth)
    (results / "metrics.json").write_text(
        json.dumps({"split": "test", "model": cot.metadata["model"]})
    )
    with pytest.raises(TaskvecError, match="different runs"):
        correlate(cot, results, tmp_path / "p")
    out = tmp_path / "forced"
    where = ["--output-dir", str(cot.task_vector_dir.parent.parent), "--out", str(out)]
    assert (
        main(["correlate", cot.name, str(results), "--force", "--permutations", "3", *where]) == 0
    )
    printed = capsys.readouterr().out
    assert "note: labels joined by --force" in printed and "split: session 'train'" in printed
    saved = pd.read_csv(out / "correlate.csv", keep_default_na=False)
    assert saved.forced.str.startswith("labels joined by --force").all()


def test_correlate_by_question_kind(cot: Session, tmp_path: Path) -> None:
    """The builtin financial questions have kinds: the kind baseline and the per-kind table appear."""
    truth = {sid: i % 3 == 0 for i, sid in enumerate(cot.sample_ids)}
    result = correlate(cot, _write_predictions(tmp_path, truth), tmp_path, permutations=3)
    by_kind = result.by_kind
    assert (
        "kind_auc" in result.table
        and len(by_kind)
        and (tmp_path / "correlate_by_kind.csv").is_file()
    )
    first = by_kind[by_kind.key == cot.keys[0]]
    assert first.n.sum() == N_SAMPLES and first.n_correct.sum() == sum(truth.values())


def test_project_coloured_by_correctness(cot: Session, vanilla: Session, tmp_path: Path) -> None:
    truth = {sid: i % 2 == 0 for i, sid in enumerate(cot.sample_ids)}
    result = project([cot, vanilla], 2, "last", tmp_path, [truth, None])
    samples = result.table[result.table.kind == "sample"]
    mine = samples[samples.session == "cot_5shot_train"]
    assert mine.correct.tolist() == [truth[s] for s in cot.sample_ids]
    assert samples[samples.session == "vanilla_0shot_train"].correct.isna().all()
    _assert_image(result.plots[0])


def test_commands_write_plots(
    sessions: tuple[Path, list[str]],
    cot: Session,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, names = sessions
    where = ["--output-dir", str(out)]
    assert main(["compare", *names, *where, "--out", str(tmp_path / "c")]) == 0
    assert (
        main(
            [
                "project",
                *names,
                "--layer",
                "2",
                "--position",
                "-2",
                *where,
                "--out",
                str(tmp_path / "p"),
            ]
        )
        == 0
    )
    results = _write_predictions(
        tmp_path / "results", {sid: i % 3 == 0 for i, sid in enumerate(cot.sample_ids)}
    )
    assert main(["correlate", names[0], str(results), *where, "--out", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out
    assert (
        "dist/sd" in printed
        and "explained variance: PC1" in printed
        and f"{N_SAMPLES} matched" in printed
        and "verdict" in printed
    )
    assert "samples_cos_std" not in printed  # a per-layer summary, not every row and column
    pngs = sorted(tmp_path.glob("*/*.png"))
    assert [p.name for p in pngs] == [
        "compare_per_sample.png",
        "compare_separation.png",
        "compare_similarity.png",
        "project_layer_2_pos_-2.png",
        "correlate.png",
    ]
    for path in pngs:
        _assert_image(path)
    assert main(["compare", names[0], "nope", *where]) == 2
    assert main(["project", names[0], "--layer", "1", *where, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("taskvec: error:") == 2


def test_project_cli_matches_results_to_sessions(
    sessions: tuple[Path, list[str]], cot: Session, tmp_path: Path
) -> None:
    out, names = sessions
    truth = {sid: i % 2 == 0 for i, sid in enumerate(cot.sample_ids)}
    results = _write_predictions(tmp_path / "results", truth)
    args = ["project", *names, "--layer", "2", "--output-dir", str(out), "--out", str(tmp_path)]
    assert main([*args, "--results", str(results)]) == 0
    table = pd.read_csv(tmp_path / "project_layer_2_pos_last.csv")
    mine = table[(table.session == "cot_5shot_train") & (table.kind == "sample")]
    assert mine.correct.tolist() == [truth[s] for s in mine.sample_id]
    other = _write_predictions(tmp_path / "other", {"test_0": True, "test_1": False})
    assert main([*args, "--results", str(other)]) == 2  # made from other prompts: refused


def test_the_python_api_returns_tables_without_writing_files(
    cot: Session, vanilla: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`taskvec.analysis.compare(sessions)` with no folder: the same table, nothing on disk."""
    monkeypatch.chdir(tmp_path)
    results = _write_predictions(
        tmp_path / "results", {i: n % 2 == 0 for n, i in enumerate(cot.sample_ids)}
    )
    before = sorted(tmp_path.rglob("*"))
    tables = [
        (compare([cot, vanilla]), compare([cot, vanilla], tmp_path / "c")),
        (
            project([cot, vanilla], cot.layers[0]),
            project([cot, vanilla], cot.layers[0], None, tmp_path / "p"),
        ),
        (correlate(cot, results, force=True), correlate(cot, results, tmp_path / "r", force=True)),
    ]
    written = set(tmp_path.rglob("*")) - set(before)  # only the folders the saved calls named
    for bare, saved in tables:
        pd.testing.assert_frame_equal(bare.table, saved.table)
        assert bare.csv is None and bare.plots == () and saved.csv is not None
        assert not saved.table.attrs  # every value is a field of the result
    assert {p.relative_to(tmp_path).parts[0] for p in written} == {"c", "p", "r"}
