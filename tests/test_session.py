"""load_session / list_sessions against sessions the real pipeline wrote on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import taskvec
from taskvec.cli import main
from taskvec.errors import TaskvecError
from taskvec.session.reader import Session, list_sessions, load_session
from tests.tiny_sessions import (
    copy_session,
    edit_metadata,
    extract_sessions,
    sample_records,
    write_consolidated,
)


@pytest.fixture(scope="module")
def sessions(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str]]:
    return extract_sessions(tmp_path_factory.mktemp("sessions"), tiny_model_dir)


def _stacked(raw_dir: Path, key: str) -> torch.Tensor:
    return torch.stack([r[key] for r in sample_records(raw_dir)])


def test_lookup_by_name_task_vector_dir_and_raw_dir(
    sessions: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, (cot, _) = sessions
    by_name = load_session(cot, out)
    by_dir = load_session(out / "task_vector" / cot)
    by_raw = load_session(str(out / "raw_representations" / cot))
    for s in (by_name, by_dir, by_raw):
        assert s.name == cot and s.raw_dir == out / "raw_representations" / cot
    monkeypatch.chdir(out.parent)  # the default output_dir is ./outputs
    (out.parent / "outputs").symlink_to(out)
    assert taskvec.load_session(cot).name == cot


def test_unknown_session_names_close_matches(sessions: tuple[Path, list[str]]) -> None:
    out, (cot, _) = sessions
    typo = cot[:10] + "x" + cot[11:]
    with pytest.raises(TaskvecError, match="did you mean: " + cot.replace(".", r"\.")) as err:
        load_session(typo, out)
    assert "\n" not in str(err.value)
    with pytest.raises(TaskvecError, match="did you mean: cot_5shot_train"):
        load_session("cot_5shot_trian", out)
    with pytest.raises(TaskvecError, match="no session 'nothing-like-it'.*taskvec ls"):
        load_session("nothing-like-it", out)


def test_prefix_stem_and_last_name_a_session(
    sessions: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    out, (cot, vanilla) = sessions
    assert load_session(cot[:12], out).name == cot  # a unique prefix
    assert load_session("vanilla_0shot_train", out).name == vanilla  # the label stem
    time = vanilla.rsplit("_", 1)[-1]
    assert load_session(f"vanilla_0shot_train@{time}", out).name == vanilla
    assert load_session("@last", out).name == vanilla  # the newest
    assert main(["show", "@last", "--output-dir", str(out)]) == 0
    assert vanilla in capsys.readouterr().out


def test_ambiguous_prefix_lists_the_sessions(
    tmp_path: Path, sessions: tuple[Path, list[str]]
) -> None:
    out, (cot, _) = sessions
    copy = copy_session(out, cot, tmp_path)
    other = cot.replace("_task_vector_", "_task_vector_x")  # same stem, another run
    for sub in ("task_vector", "raw_representations"):
        (copy / sub / cot).rename(copy / sub / other)
    copy_session(out, cot, tmp_path)
    with pytest.raises(TaskvecError, match="'cot_5shot' matches 2 sessions.*@last"):
        load_session("cot_5shot", copy)


def test_fields_match_the_files(sessions: tuple[Path, list[str]]) -> None:
    out, (cot, _) = sessions
    s = load_session(cot, out)
    meta = json.loads((out / "task_vector" / cot / "metadata.json").read_text())
    tv = torch.load(out / "task_vector" / cot / "task_vectors.pt", weights_only=True)
    assert s.metadata == meta and s.status == "complete" and s.config["layers"] == [0, 2, -1]
    assert s.keys == meta["keys"] and not any(k.endswith("_std") for k in s.keys)
    assert s.layers == [0, 2, 3] and s.positions == ["last", "-2", "first"]
    assert set(s.task_vectors) == set(tv)
    torch.testing.assert_close(s.mean("layer_2_pos_-2"), tv["layer_2_pos_-2"])
    torch.testing.assert_close(s.std("layer_2_pos_-2"), tv["layer_2_pos_-2_std"])
    assert [p["sample_id"] for p in s.prompts] == meta["sample_ids"] == s.sample_ids
    with pytest.raises(TaskvecError, match="no key 'layer_9_pos_last'"):
        s.vectors("layer_9_pos_last")


def test_vectors_equal_stacked_sample_files_on_both_paths(
    sessions: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """The per-sample-file fallback and the consolidated safetensors file give the same (n, hidden) rows."""
    out, (cot, _) = sessions
    original = load_session(cot, out)  # whichever path the pipeline's output offers
    fallback = load_session(cot, copy_session(out, cot, tmp_path / "plain"))
    fast_out = copy_session(out, cot, tmp_path / "fast")
    raw = fast_out / "raw_representations" / cot
    # rows out of order on purpose
    write_consolidated(raw, order=[5, 0, 11, 3, 1, 2, 4, 6, 7, 8, 9, 10])
    for f in raw.glob("sample_*.pt"):
        f.unlink()  # the fast path must not need them
    fast = load_session(cot, fast_out)
    assert not fallback.vectors_file.exists() and fast.vectors_file.exists()
    for key in original.keys:
        expected = _stacked(out / "raw_representations" / cot, key)
        for s in (original, fallback, fast):
            v = s.vectors(key)
            assert v.shape == (12, 64) and v.dtype == torch.float32
            assert torch.equal(v, expected), (key, s.raw_dir)
        assert fallback.vectors(key) is fallback.vectors(key)  # cached
    assert fast.sample_ids == fallback.sample_ids == [f"train_{i}" for i in range(12)]


def test_interrupted_session_loads_what_it_has(
    sessions: tuple[Path, list[str]], tmp_path: Path
) -> None:
    out, (cot, _) = sessions
    copy = copy_session(out, cot, tmp_path)
    edit_metadata(copy / "task_vector" / cot, status="interrupted")
    (copy / "task_vector" / cot / "task_vectors.pt").unlink()
    for idx in (1, 4, 7):
        (copy / "raw_representations" / cot / f"sample_{idx:05d}.pt").unlink()
    s = load_session(cot, copy)
    assert s.status == "interrupted"
    assert s.sample_ids == [f"train_{i}" for i in range(12) if i not in (1, 4, 7)]
    full = _stacked(out / "raw_representations" / cot, "layer_0_pos_last")
    assert torch.equal(
        s.vectors("layer_0_pos_last"), full[[i for i in range(12) if i not in (1, 4, 7)]]
    )
    with pytest.raises(TaskvecError, match=f"is interrupted, not complete.*--resume {cot}") as err:
        s.mean("layer_0_pos_last")
    assert "\n" not in str(err.value)


def test_sample_ids_follow_sample_idx_when_samples_were_skipped(
    sessions: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """With `skipped` samples, metadata's sample_ids lists only the extracted ones and
    sample_idxs maps them."""
    out, (cot, _) = sessions
    copy = copy_session(out, cot, tmp_path)
    (copy / "raw_representations" / cot / "sample_00003.pt").unlink()
    ids = [f"train_{i}" for i in range(12) if i != 3]
    edit_metadata(
        copy / "task_vector" / cot, sample_ids=ids, sample_idxs=[i for i in range(12) if i != 3]
    )
    assert load_session(cot, copy).sample_ids == ids


def test_list_sessions_tolerates_broken_dirs(
    sessions: tuple[Path, list[str]], tmp_path: Path
) -> None:
    out, (cot, vanilla) = sessions
    copy_session(out, cot, tmp_path)
    copy_session(out, vanilla, tmp_path)
    (tmp_path / "task_vector" / "broken_tiny_task_vector_20200101_000000").mkdir()
    (tmp_path / "raw_representations" / "orphan").mkdir()
    listed = taskvec.list_sessions(tmp_path)
    assert [s.name for s in listed] == [
        "broken_tiny_task_vector_20200101_000000",
        cot,
        vanilla,
        "orphan",
    ]
    assert [s.status for s in listed] == ["unreadable", "complete", "complete", "unreadable"]
    assert (
        listed[1].prompt_type == "cot"
        and listed[1].n_shot == 5
        and listed[2].n_shot == 0
        and listed[1].n_samples == 12
    )
    assert listed[0].created_at == "2020-01-01T00:00:00"
    with pytest.raises(TaskvecError, match="not a directory"):
        list_sessions(tmp_path / "missing")
    with pytest.raises(TaskvecError, match="cannot read"):
        Session(
            tmp_path / "task_vector" / "broken_tiny_task_vector_20200101_000000", tmp_path / "x"
        )


def test_ls_and_show_commands(
    sessions: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    out, (cot, vanilla) = sessions
    assert main(["ls", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "prompt_type" in lines[0] and cot in lines[1] and vanilla in lines[2]
    assert main(["show", cot, "--output-dir", str(out)]) == 0
    shown = capsys.readouterr().out
    for text in (
        "status              complete",
        "layers              0, 2, 3",
        "positions           last, -2, first",
        "hidden size         64",
        "12 of 12 have vectors",
        str(out / "raw_representations" / cot),
    ):
        assert text in shown
    assert main(["show", "no-such-session", "--output-dir", str(out)]) == 2
    assert capsys.readouterr().err.startswith("taskvec: error: no session 'no-such-session'")
