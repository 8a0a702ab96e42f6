"""taskvec report: one self-contained page for a study, checked as a person sees it (headless chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from taskvec.cli import main
from taskvec.errors import TaskvecError
from taskvec.report.run import make_report
from taskvec.session.reader import load_session
from tests.tiny_sessions import extract_sessions

STEERING = {
    "baseline": {"accuracy": 0.25, "accuracy_prefix": 0.5, "n": 8},
    "conditions": [
        {
            "layer": 2,
            "scale": s,
            "mode": "add",
            "where": "last",
            "control": c,
            "accuracy": a,
            "accuracy_prefix": a + 0.1,
            "n": 8,
            "changed_vs_baseline": 3,
            "mean_new_tokens": 4.5,
        }
        for s, c, a in ((1.0, False, 0.625), (1.0, True, 0.25), (2.0, False, 0.75))
    ],
    "vector": {
        "expression": "COT5 - VANILLA0",
        "sessions": ["cot", "vanilla"],
        "position": "last",
        "norm_per_layer": {"2": 3.5},
    },
}
PATCHING = {
    "model": "tiny",
    "n_layers": 4,
    "mode": "replace",
    "best_layer": 2,
    "config_path": "patch.yaml",
    "per_task": [
        {
            "task": "list_first",
            "test": {"zero_shot": 0.0, "few_shot": 0.9, "task_vector": 0.7, "layer": 2},
        }
    ],
}


@pytest.fixture(scope="module")
def study(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding two tiny sessions, an evaluation of the first, a patching and a steering result."""
    root = tmp_path_factory.mktemp("study")
    out, names = extract_sessions(root, tiny_model_dir, max_samples=12)
    cot = load_session(names[0], out)
    results = root / "results" / "cot_eval"
    results.mkdir(parents=True)
    rows = [
        {"sample_id": sid, "correct": i % 3 == 0, "prompt": p["prompt"]}
        for i, (sid, p) in enumerate(zip(cot.sample_ids, cot.prompts))
    ]
    (results / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    meta = cot.metadata
    metrics = {k: meta[k] for k in ("model", "split", "prompt_type", "n_shot", "model_short")}
    metrics |= {
        "accuracy": 4 / 12,
        "n_samples": 12,
        "n_correct": 4,
        "n_parse_failures": 0,
        "n_truncated": 0,
    }
    (results / "metrics.json").write_text(json.dumps(metrics))
    for name, file, data in (
        ("patch_run", "patching.json", PATCHING),
        ("steer_run", "steering.json", STEERING),
    ):
        (root / "results" / name).mkdir()
        (root / "results" / name / file).write_text(json.dumps(data))
    fig = Figure(figsize=(4, 3))
    fig.subplots().plot([0, 1, 2], [0.25, 0.6, 0.75], marker="o")
    fig.savefig(root / "results" / "steer_run" / "steering.png")
    return root


@pytest.fixture(scope="module")
def page(study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    assert (
        main(
            [
                "report",
                str(study / "out"),
                str(study / "results"),
                "--out",
                str(out),
                "--permutations",
                "5",
                "--lens-top",
                "3",
            ]
        )
        == 0
    )
    return out / "report.html"


def test_page_is_self_contained_and_has_every_part(page: Path) -> None:
    text = page.read_text()
    assert "<script" not in text and "http" not in text.replace("http-equiv", "")  # nothing fetched
    assert not re.search(r'src="(?!data:image/png;base64,)', text)  # every image embedded
    for heading in (
        "Sessions",
        "Evaluation",
        "Compare",
        "PCA",
        "Correlate",
        "Logit lens",
        "patching",
        "Steering",
    ):
        assert heading in text, heading
    assert text.count("<img") >= 8 and "top tokens (probability) of the task vector" in text
    assert "COT5 - VANILLA0" in text and "changed_vs_baseline" in text  # the steering table
    assert "taskvec compare " in text and "taskvec correlate " in text and "taskvec lens " in text
    assert "taskvec report --out" in text  # the command that makes the whole page again
    figures = page.parent / "figures"
    assert (figures / "evaluation_accuracy.png").is_file() and list(
        figures.glob("correlate_*/correlate.csv")
    )


def test_steering_results_alone(study: Path, tmp_path: Path) -> None:
    (study / "results" / "steer_run" / "config.yaml").write_text("vector: COT5 - VANILLA0\n")
    path = make_report([study / "results" / "steer_run"], tmp_path)
    (study / "results" / "steer_run" / "config.yaml").unlink()
    text = path.read_text()
    assert f"taskvec steer --config {study / 'results' / 'steer_run' / 'config.yaml'}" in text
    assert "Steering" in text and text.count("<img") == 1 and "0.625" in text
    assert "unsteered accuracy 0.250 (prefix 0.500, n 8)" in text  # scores rounded as in the tables
    assert "Sessions" not in text  # empty sections are left out


def test_bad_items(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaskvecError, match="holds no session, evaluation, patching or steering"):
        make_report([tmp_path / "empty"], tmp_path / "out")
    assert main(["report", "no_such_session", "--output-dir", str(tmp_path)]) == 2
    assert "no session 'no_such_session'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


CHECK = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.target.src || e)), true);
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !i.complete || i.naturalWidth === 0).length;
  const out = document.createElement('pre');
  out.id = 'taskvec-check';
  out.textContent = JSON.stringify({images: images.length, broken: broken, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="needs Debian's chromium (.ci/run installs it)"
)
def test_page_renders_in_headless_chromium(page: Path, tmp_path: Path) -> None:
    """Every image decodes (naturalWidth > 0), no script error is logged, and the screenshot is not blank."""
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("<head>", "<head>" + CHECK, 1))
    flags = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [*flags, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    found = re.search(r'<pre id="taskvec-check">(.*?)</pre>', dom.stdout)
    assert found, dom.stderr[-2000:]
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert check["images"] >= 8 and check["broken"] == 0 and check["errors"] == [], check
    assert "Uncaught" not in dom.stderr and "CONSOLE" not in dom.stderr, dom.stderr[-2000:]
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*flags, "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    image = imread(shot)[..., :3]
    assert image.shape[:2] == (2400, 1280)
    assert image.std() > 0.05 and (image < 0.5).mean() > 0.002  # text and figures, not a blank page
    shutil.copy(
        shot, page.parent / "screenshot.png"
    )  # kept beside the page for a person to look at


def test_wide_figures_scroll_and_steering_scores_are_rounded(tmp_path: Path) -> None:
    """A figure wider than WIDE_PX is shown at half its pixels in a sideways-scrolling box (a compare of
    five sessions squeezed to the page width is unreadable); a narrow one fills the page as before."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from taskvec.report.html import WIDE_PX, Figure, figure_html, png_width

    for inches, wide in ((4.0, False), (40.0, True)):
        fig = plt.figure(figsize=(inches, 2), dpi=100)
        fig.savefig(tmp_path / "f.png")
        plt.close(fig)
        raw = (tmp_path / "f.png").read_bytes()
        assert png_width(raw) == int(inches * 100) and (png_width(raw) > WIDE_PX) == wide
        block = figure_html(Figure(tmp_path / "f.png", "t", "cmd", []))
        assert ('class="scroll"' in block) == wide
        assert (f'width="{int(inches * 50)}"' in block) == wide
    assert png_width(b"not a png") == 0


def test_accuracy_bars_of_two_runs_of_one_strategy_are_told_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two results folders of one strategy (a re-run) get two tick labels: their names lose the model,
    not the tag and the timestamp (cut at 60 characters, both read "cot 5-shot / cot_5shot_test_...")."""
    from taskvec.report import sections

    drawn: list[Figure] = []
    monkeypatch.setattr(sections, "save_figure", lambda fig, path: drawn.append(fig) or path)
    model = "SmolLM2-135M-Instruct.Q4_1"
    rows: list[dict[str, object]] = [
        {
            "results": f"cot_5shot_test_{model}_results_20261207_{t}",
            "model": model,
            "strategy": "cot 5-shot",
            "accuracy": 46 / 53,
            "correct": 46,
            "n": 53,
        }
        for t in ("060720", "062614")
    ]
    sections._accuracy_plot(rows, tmp_path / "acc.png")
    labels = [t.get_text() for t in drawn[0].axes[0].get_xticklabels()]
    assert labels == [
        "cot 5-shot\ncot_5shot_test_20261207_060720",
        "cot 5-shot\ncot_5shot_test_20261207_062614",
    ]
