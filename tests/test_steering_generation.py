"""Per-row steering in the generator: every row gives the tokens plain `generate` with its own hook
gives."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from transformers import GenerationConfig

from taskvec.model.capture import block_output, decoder_blocks
from taskvec.model.generation import Generator, Reading
from taskvec.model.steer import steer_hidden
from taskvec.model.steering import Steer
from taskvec.prompts.config import Generation
from tests.test_generation import prompts
from tests.tiny import make_model

MAX_NEW = 10
LAYER = 1
MODES = [("add", 4.0), ("ablate", 0.0), ("ablate", 3.0), ("replace", 1.0)]
WHERES = ["last", "prompt", "generated", "all"]


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def model(request: pytest.FixtureRequest) -> torch.nn.Module:
    return make_model(request.param, n_layers=3)


def vector(seed: int = 3) -> torch.Tensor:
    return torch.randn(64, generator=torch.Generator().manual_seed(seed))


@contextmanager
def hf_hook(model: torch.nn.Module, steer: Steer, prompt_len: int) -> Iterator[None]:
    """An independent reference: a forward hook steering `generate` at batch size 1."""

    def hook(_m: torch.nn.Module, _a: tuple, output: torch.Tensor | tuple) -> None:
        hidden = block_output(output)
        first = hidden.shape[1] > 1 or prompt_len == 1  # the prompt's forward, else a decode step
        cols = {
            "last": [prompt_len - 1] if first else [],
            "prompt": list(range(prompt_len)) if first else [],
            "generated": [] if first else [0],
            "all": list(range(hidden.shape[1])),
        }[steer.where]
        for c in cols:
            hidden[0, c] = steer_hidden(hidden[0, c], steer.vectors[LAYER], steer.mode, steer.scale)

    handle = decoder_blocks(model)[LAYER].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def reference(model: torch.nn.Module, ids: list[int], steer: Steer | None) -> list[int]:
    cfg = GenerationConfig(max_new_tokens=MAX_NEW, do_sample=False, pad_token_id=0)
    with torch.inference_mode():
        if steer is None:
            out = model.generate(input_ids=torch.tensor([ids]), generation_config=cfg)
        else:
            with hf_hook(model, steer, len(ids)):
                out = model.generate(input_ids=torch.tensor([ids]), generation_config=cfg)
    return out[0, len(ids) :].tolist()


def steered_run(
    model: torch.nn.Module,
    ids: list[list[int]],
    steers: list[Steer | None],
    batch_size: int,
    max_new: int = MAX_NEW,
    **kw: object,
) -> tuple[list[list[int]], Generator]:
    gen = Generator(
        model, Generation(max_new_tokens=max_new, do_sample=False), [], batch_size, **kw
    )  # type: ignore[arg-type]
    got = {f.idx: f.tokens for f in gen.run(ids, steers=steers)}
    return [got[i] for i in range(len(ids))], gen


@pytest.mark.parametrize("where", WHERES)
def test_a_sweep_in_one_batch_equals_each_row_alone_and_plain_generate(
    model: torch.nn.Module, where: str
) -> None:
    """Every mode at one `where`, plus unsteered rows, in one batched run (shared prefixes,
    drafts): each row equals its prompt alone with its condition, and `generate` with a plain
    hook."""
    base = prompts()[:6]
    conditions: list[Steer | None] = [None]
    conditions += [Steer({LAYER: vector()}, m, s, where) for m, s in MODES]  # type: ignore[arg-type]
    ids = [p for _ in conditions for p in base]
    steers = [c for c in conditions for _ in base]
    batched, _ = steered_run(model, ids, steers, batch_size=7)
    alone = [steered_run(model, [p], [s], batch_size=1)[0][0] for p, s in zip(ids, steers)]
    plain = [reference(model, p, s) for p, s in zip(ids, steers)]
    assert batched == alone == plain
    changed = sum(b != batched[i % len(base)] for i, b in enumerate(batched))
    assert changed >= 2 * len(base), "the conditions must change tokens, or the test shows nothing"


@pytest.mark.parametrize("where", WHERES)
def test_add_scale_zero_gives_the_baseline_tokens(model: torch.nn.Module, where: str) -> None:
    base = prompts()
    zero = Steer({LAYER: vector(), 2: vector(4)}, "add", 0.0, where)  # type: ignore[arg-type]
    got, _ = steered_run(model, base + base, [None] * len(base) + [zero] * len(base), 5)
    assert got[: len(base)] == got[len(base) :]


def test_where_last_steers_only_the_last_prompt_token(model: torch.nn.Module) -> None:
    """The seam's plans: one steered column per row in the suffix prefill (its last prompt token),
    none in a prefix or a decode step; and the block output read at earlier tokens is the
    unsteered one."""
    from taskvec.model.steering import RowSteering

    planned: list[tuple[int, list[list[int]]]] = []
    original = RowSteering.plan

    def spy(self: RowSteering, steers: list, mask: torch.Tensor) -> None:
        cols = [torch.nonzero(row).flatten().tolist() for row in mask]
        planned.append((mask.shape[1], cols))
        original(self, steers, mask)

    ids = prompts()[:6]
    last = [[len(p) - 2, len(p) - 1] for p in ids]
    big = Steer({LAYER: 50 * vector()}, "add", 1.0, "last")
    RowSteering.plan = spy  # type: ignore[method-assign]
    try:
        kw = {"reading": Reading([LAYER], last), "batch_size": 4}
        steered = Generator(model, Generation(max_new_tokens=4), [], **kw)  # type: ignore[arg-type]
        got = {f.idx: f.vectors for f in steered.run(ids, steers=[big] * len(ids))}
    finally:
        RowSteering.plan = original  # type: ignore[method-assign]
    plain = Generator(model, Generation(max_new_tokens=4), [], **kw)  # type: ignore[arg-type]
    want = {f.idx: f.vectors for f in plain.run(ids)}
    prefills = [cols for width, cols in planned if any(cols)]
    assert prefills and all(
        c == [width - 1] for w, cols in planned for c in cols if c for width in [w]
    )
    for i in range(len(ids)):
        a, b = got[i], want[i]
        assert a is not None and b is not None
        torch.testing.assert_close(a[:, 0], b[:, 0])  # the token before the last: untouched
        torch.testing.assert_close(a[:, 1], b[:, 1] + 50 * vector(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("where", ["generated", "all"])
def test_drafts_leave_steered_tokens_unchanged(model: torch.nn.Module, where: str) -> None:
    """40 tokens (loops the drafts predict) with steered generated tokens: drafts on equal drafts
    off."""
    ids = prompts()
    steers: list[Steer | None] = [Steer({LAYER: vector()}, "add", 2.0, where)] * len(ids)  # type: ignore[arg-type]
    off, _ = steered_run(model, ids, steers, 16, 40, draft_tokens=0)
    on, gen = steered_run(model, ids, steers, 16, 40, draft_tokens=8)
    assert on == off
    assert gen.stats.accepted_tokens > 0, "drafts must be taken, or the test shows nothing"


def test_ablate_leaves_the_steered_tokens_orthogonal_to_the_vector(model: torch.nn.Module) -> None:
    ids = prompts()[:6]
    v = vector()
    read = Reading([LAYER], [[0, len(p) // 2, len(p) - 1] for p in ids])
    gen = Generator(model, Generation(max_new_tokens=2), [], 4, reading=read)
    out = list(gen.run(ids, steers=[Steer({LAYER: v}, "ablate", 0.0, "prompt")] * len(ids)))
    for f in out:
        assert f.vectors is not None
        cos = (f.vectors[0] @ v) / (f.vectors[0].norm(dim=-1) * v.norm())
        assert cos.abs().max() < 1e-5
