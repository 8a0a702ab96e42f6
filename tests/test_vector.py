"""TaskVector as a value (arithmetic, save/load, apply) and expressions over real tiny sessions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import taskvec
from taskvec.errors import TaskvecError
from taskvec.model.steer import steering_hooks
from taskvec.session.expression import parse_vector
from taskvec.session.reader import load_session
from taskvec.session.vector import TaskVector
from tests.tiny import make_model
from tests.tiny_sessions import copy_session, edit_metadata, extract_sessions


def vector(seed: int, layers: tuple[int, ...] = (0, 2), **fields: object) -> TaskVector:
    g = torch.Generator().manual_seed(seed)
    values: dict[str, object] = dict(position="last", model="m", hidden_size=8)
    values.update(fields)
    vectors = {layer: torch.randn(int(values["hidden_size"]), generator=g) for layer in layers}
    return TaskVector(vectors, expression=f"V{seed}", sessions=(f"s{seed}",), **values)


@pytest.fixture(scope="module")
def sessions(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str]]:
    return extract_sessions(tmp_path_factory.mktemp("vec"), tiny_model_dir, max_samples=4)


def test_arithmetic_is_per_layer_in_float32() -> None:
    a, b = vector(1), vector(2, layers=(2, 3))
    total = 0.5 * a - b * 2 + -a
    assert total.layers == [2]
    expected = 0.5 * a.vectors[2] - 2 * b.vectors[2] - a.vectors[2]
    assert total.vectors[2].dtype == torch.float32
    torch.testing.assert_close(total.vectors[2], expected)
    assert total.expression == "0.5 * V1 - 2 * V2 + -V1"
    assert total.sessions == ("s1", "s2")
    assert (2 * (a - b)).expression == "2 * (V1 - V2)"
    torch.testing.assert_close((a / 4).vectors[0], a.vectors[0] / 4)
    assert a.norm() == {0: float(a.vectors[0].norm()), 2: float(a.vectors[2].norm())}


def test_vectors_are_stored_as_float32_on_the_cpu() -> None:
    half = TaskVector({1: torch.ones(4, dtype=torch.float16)}, "last", "m", 4, "H")
    assert half.vectors[1].dtype == torch.float32 and half.vectors[1].device.type == "cpu"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: vector(1) + vector(2, model="other"), "different models"),
        (lambda: vector(1) - vector(2, hidden_size=4), "different hidden sizes"),
        (lambda: vector(1) + vector(2, position="first"), "different positions"),
        (lambda: vector(1) + vector(2, layers=(5,)), "share no layer"),
        (lambda: vector(1) * vector(2), "cannot multiply two vectors"),
        (lambda: vector(1) + 1.0, "a number and a vector"),
        (lambda: vector(1) * float("inf"), "not a finite number"),
        (lambda: vector(1) / 0, "by zero"),
        (lambda: TaskVector({0: torch.ones(3)}, "last", "m", 8, "bad"), "expected \\(8,\\)"),
        (lambda: TaskVector({}, "last", "m", 8, "empty"), "has no layers"),
    ],
)
def test_bad_arithmetic_is_refused_in_one_line(make: object, message: str) -> None:
    with pytest.raises(TaskvecError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    a = 0.5 * vector(1) - vector(2)
    path = a.save(tmp_path / "v.safetensors")
    back = TaskVector.load(path)
    assert back.layers == a.layers
    for layer in a.layers:
        assert torch.equal(back.vectors[layer], a.vectors[layer])
    assert (back.expression, back.sessions, back.position, back.model, back.hidden_size) == (
        a.expression,
        a.sessions,
        a.position,
        a.model,
        a.hidden_size,
    )
    save_file({"x": torch.ones(2)}, str(tmp_path / "other.safetensors"))
    meta = {"format": "taskvec.TaskVector/1", "provenance": "{}"}
    save_file({"layer_0": torch.ones(2)}, str(tmp_path / "damaged.safetensors"), metadata=meta)
    (tmp_path / "junk.safetensors").write_text("not a tensor file")
    for bad, message in [
        ("other.safetensors", "not a saved task vector"),
        ("junk.safetensors", "cannot read a task vector"),
        ("damaged.safetensors", "a damaged task vector file"),
        ("missing.safetensors", "cannot read a task vector"),
    ]:
        with pytest.raises(TaskvecError, match=message):
            TaskVector.load(tmp_path / bad)


def test_session_task_vector_holds_the_sessions_means(sessions: tuple[Path, list[str]]) -> None:
    out, (cot, _) = sessions
    s = load_session(cot, out)
    tv = s.task_vector("-2")
    assert tv.layers == s.layers and tv.position == "-2" and tv.sessions == (cot,)
    assert tv.model == s.metadata["model"] and tv.hidden_size == s.metadata["hidden_size"]
    for layer in tv.layers:
        assert torch.equal(tv.vectors[layer], s.mean(f"layer_{layer}_pos_-2"))
    with pytest.raises(TaskvecError, match="has no position 'middle'; it has last, -2, first"):
        s.task_vector("middle")


def test_expressions_over_sessions(sessions: tuple[Path, list[str]]) -> None:
    out, (cot, van) = sessions
    a, b = (load_session(n, out).task_vector() for n in (cot, van))
    diff = parse_vector(f"{cot} - {van}", out)
    assert diff.expression == f"{cot} - {van}" and diff.sessions == (cot, van)
    mixed = parse_vector(
        f" -(0.5 * {cot} + {van}) * 2 + 1e-1 * {str(out / 'task_vector' / van)}", out
    )
    for layer in a.layers:
        torch.testing.assert_close(diff.vectors[layer], a.vectors[layer] - b.vectors[layer])
        torch.testing.assert_close(
            mixed.vectors[layer],
            -(0.5 * a.vectors[layer] + b.vectors[layer]) * 2 + 0.1 * b.vectors[layer],
        )
    first = parse_vector(cot, out, position="first")
    assert first.position == "first" and first.expression == cot


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("   ", "the expression is empty"),
        ("COT5 - VAN5", "no session 'COT5'"),
        ("{cot} * {van}", "multiplies two vectors"),
        ("{cot} + 2", "a number and a vector"),
        ("nan * {cot}", "not a finite number"),
        ("2 * 3", "is a number, not a vector"),
        ("{cot} {van}", "cannot parse"),
        ("{cot} ** 2", "cannot parse|something other than"),
        ("{cot} - {other}", "different models"),
        ("{cot} - {wide}", "different hidden sizes"),
    ],
)
def test_bad_expressions_are_refused_in_one_line(
    sessions: tuple[Path, list[str]], tmp_path: Path, expression: str, message: str
) -> None:
    out, (cot, van) = sessions
    root = tmp_path / "out"
    for name in (cot, van):
        copy_session(out, name, root)
    for name, change in (
        ("other", {"model": "another/model", "model_id": "another/model"}),
        ("wide", {"hidden_size": 32}),
    ):
        copy_session(out, van, tmp_path / name)
        shutil.move(tmp_path / name / "task_vector" / van, root / "task_vector" / f"{name}_{van}")
        edit_metadata(root / "task_vector" / f"{name}_{van}", **change)
    if "wide" in expression:
        path = root / "task_vector" / f"wide_{van}" / "task_vectors.pt"
        torch.save({k: torch.zeros(32) for k in torch.load(path, weights_only=True)}, path)
    text = expression.format(cot=cot, van=van, other=f"other_{van}", wide=f"wide_{van}")
    with pytest.raises(TaskvecError, match=message) as info:
        parse_vector(text, root)
    assert "\n" not in str(info.value)


def test_a_missing_position_is_refused(sessions: tuple[Path, list[str]]) -> None:
    out, (cot, van) = sessions
    with pytest.raises(TaskvecError, match="has no position '3'"):
        parse_vector(f"{cot} - {van}", out, position="3")


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_apply_is_steering_hooks_on_the_vectors_layers(
    sessions: tuple[Path, list[str]], family: str
) -> None:
    out, (cot, _) = sessions
    tv = 3.0 * load_session(cot, out).task_vector()
    model = make_model(family, n_layers=4)
    ids = torch.tensor([[5, 9, 13, 40, 2]])
    with torch.inference_mode():
        with tv.apply(model, [2], "add", 1.0, "prompt"):
            via_apply = model(input_ids=ids).logits
        with steering_hooks(model, {2: tv.vectors[2]}, "add", 1.0, "prompt"):
            via_hooks = model(input_ids=ids).logits
        plain = model(input_ids=ids).logits
    assert torch.equal(via_apply, via_hooks) and not torch.equal(via_apply, plain)
    assert not model._forward_pre_hooks
    with pytest.raises(TaskvecError, match="has no layer 1; it has 0, 2, 3"):
        with tv.apply(model, 1):
            pass


def test_public_names() -> None:
    assert taskvec.TaskVector is TaskVector and taskvec.parse_vector is parse_vector
