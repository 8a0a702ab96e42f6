"""Continuous-batching generation with shared prefixes: greedy equals `model.generate` at batch size 1."""

from __future__ import annotations

import re

import pytest
import torch
from transformers import GenerationConfig

from taskvec.model.generation import Finished, Generator
from taskvec.model.prefill import plan
from taskvec.prompts.config import Generation
from tests.tiny import make_model, make_tokenizer

MAX_NEW = 12


def prompts(seed: int = 0) -> list[list[int]]:
    """Two groups sharing a 40-token prefix (one with a nested 20-token extension), and two
    unrelated prompts."""
    g = torch.Generator().manual_seed(seed)

    def rand(n: int) -> list[int]:
        return torch.randint(3, 400, (n,), generator=g).tolist()

    shared, nested = rand(40), rand(20)
    out = [shared + rand(n) for n in (3, 17, 9, 25)]
    out += [shared + nested + rand(n) for n in (4, 11)]
    out += [rand(30), rand(7)]
    return out


@pytest.fixture(scope="module", params=["qwen2", "llama", "llama-sharp"])
def model(request: pytest.FixtureRequest) -> torch.nn.Module:
    """The tiny families; `llama-sharp` has 6x query and key weights, so attention (and with it every
    token position) matters enough that a position off by one changes the greedy tokens."""
    model = make_model(request.param.split("-")[0], n_layers=3)
    if request.param.endswith("sharp"):
        with torch.no_grad():
            for block in model.model.layers:
                block.self_attn.q_proj.weight *= 6
                block.self_attn.k_proj.weight *= 6
    return model


def reference(
    model: torch.nn.Module, ids: list[int], eos: list[int], max_new: int = MAX_NEW
) -> list[int]:
    """Plain `generate` at batch size 1: the new tokens up to and including the first eos."""
    cfg = GenerationConfig(
        max_new_tokens=max_new,
        do_sample=False,
        eos_token_id=eos or None,
        pad_token_id=0,
        repetition_penalty=1.0,
    )
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            generation_config=cfg,
        )
    return out[0, len(ids) :].tolist()


def run(
    model: torch.nn.Module,
    ids: list[list[int]],
    eos: list[int],
    batch_size: int,
    prefix_cache: bool,
    **kw: object,
) -> dict[int, Finished]:
    settings = Generation(max_new_tokens=MAX_NEW, do_sample=False)
    gen = Generator(model, settings, eos, batch_size, prefix_cache=prefix_cache, **kw)  # type: ignore[arg-type]
    results = {f.idx: f for f in gen.run(ids)}
    assert len(results) == len(ids)
    return results


@pytest.fixture(scope="module")
def eos_case(model: torch.nn.Module) -> tuple[list[list[int]], list[int], list[list[int]]]:
    """Eos tokens picked from the free-running outputs so rows end at different steps; and the
    bs1 references."""
    ids = prompts()
    free = [reference(model, p, []) for p in ids]
    eos = sorted({free[0][2], free[3][6], free[6][9]})
    refs = [reference(model, p, eos) for p in ids]
    lengths = {len(r) for r in refs}
    assert len(lengths) >= 3, f"rows should finish at different steps: {lengths}"
    return ids, eos, refs


def test_plan_is_the_extraction_plan() -> None:
    tree = plan(prompts())
    assert sorted(n.prefix_len for n in tree.walk()) == [0, 40, 60]
    bare = plan(prompts(), prefix_cache=False)
    assert bare.prefix_len == 0 and not bare.children and sorted(bare.members) == list(range(8))


@pytest.mark.parametrize("prefix_cache", [True, False])
@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_greedy_equals_generate_batch_size_one(
    model: torch.nn.Module, eos_case: tuple, prefix_cache: bool, batch_size: int
) -> None:
    ids, eos, refs = eos_case
    got = run(model, ids, eos, batch_size, prefix_cache)
    assert [got[i].tokens for i in range(len(ids))] == refs
    for i, ref in enumerate(refs):
        assert got[i].reason == ("eos" if ref[-1] in eos else "length")


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_rows_read_the_shared_root_prefix_once(
    model: torch.nn.Module, eos_case: tuple, batch_size: int
) -> None:
    """Prompts that all share a 40-token prefix (two of them 60): the root prefix is read through
    `shared_prefix`, never copied into the rows' caches, and the tokens equal bs1 `generate`."""
    ids, eos, refs = eos_case
    settings = Generation(max_new_tokens=MAX_NEW, do_sample=False)
    gen = Generator(model, settings, eos, batch_size)
    widths: list[int] = []
    got = {
        f.idx: f.tokens for f in gen.run(ids[:6], on_step=lambda _: widths.append(gen.shared_len))
    }
    assert [got[i] for i in range(6)] == refs[:6]
    assert set(widths) == {40} and gen.shared is None  # released at the end


def test_eager_attention_takes_the_copying_path() -> None:
    model = make_model("llama", n_layers=2)
    model.set_attn_implementation("eager")
    ids = prompts()[:6]
    refs = [reference(model, p, []) for p in ids]
    gen = Generator(model, Generation(max_new_tokens=MAX_NEW, do_sample=False), [], 4)
    got = {f.idx: f.tokens for f in gen.run(ids)}
    assert [got[i] for i in range(6)] == refs and gen.shared_len == 0


def test_stats_count_prefill_once(model: torch.nn.Module, eos_case: tuple) -> None:
    ids, eos, refs = eos_case
    settings = Generation(max_new_tokens=MAX_NEW, do_sample=False)
    shared, alone = (
        Generator(model, settings, eos, 4),
        Generator(model, settings, eos, 4, prefix_cache=False),
    )
    list(shared.run(ids)), list(alone.run(ids))
    assert alone.stats.prefill_tokens == sum(map(len, ids))
    # the 40- and 20-token prefixes run once
    assert shared.stats.prefill_tokens == sum(map(len, ids)) - 5 * 40 - 1 * 20
    assert shared.stats.generated_tokens == alone.stats.generated_tokens == sum(map(len, refs))


def test_skip_runs_only_the_rest(model: torch.nn.Module, eos_case: tuple) -> None:
    ids, eos, refs = eos_case
    settings = Generation(max_new_tokens=MAX_NEW, do_sample=False)
    got = {f.idx: f.tokens for f in Generator(model, settings, eos, 3).run(ids, skip={0, 4, 5})}
    assert got == {i: refs[i] for i in range(len(ids)) if i not in {0, 4, 5}}


def test_stop_pattern_ends_a_row_at_its_first_match(
    model: torch.nn.Module, eos_case: tuple
) -> None:
    ids, eos, refs = eos_case
    tok = make_tokenizer()
    longest = max(range(len(refs)), key=lambda i: len(refs[i]))
    pattern = re.compile(re.escape(tok.decode(refs[longest][:2], skip_special_tokens=True)))
    assert len(refs[longest]) > 2 and pattern.pattern
    got = run(model, ids, eos, 3, True, tokenizer=tok, stop=pattern)
    for i, ref in enumerate(refs):
        out = got[i].tokens
        assert out == ref[: len(out)]
        if got[i].reason == "answer":
            assert pattern.search(tok.decode(out, skip_special_tokens=True))
            assert not pattern.search(tok.decode(out[:-1], skip_special_tokens=True))
        else:
            assert out == ref
    assert got[longest].reason == "answer" and len(got[longest].tokens) <= 2


def test_sampling_is_seeded_and_independent_of_batching(model: torch.nn.Module) -> None:
    ids = prompts()
    settings = Generation(max_new_tokens=MAX_NEW, do_sample=True, temperature=1.5, top_p=0.95)

    def sample(batch_size: int, seed: int, prefix_cache: bool = True) -> dict[int, list[int]]:
        gen = Generator(model, settings, [], batch_size, prefix_cache=prefix_cache, seed=seed)
        return {f.idx: f.tokens for f in gen.run(ids)}

    first = sample(3, seed=1)
    assert sample(3, seed=1) == first == sample(8, seed=1, prefix_cache=False)
    assert sample(3, seed=2) != first
    assert all(len(t) == MAX_NEW for t in first.values())


@pytest.mark.parametrize("prefix_cache", [True, False])
def test_reading_equals_extraction(
    model: torch.nn.Module, eos_case: tuple, prefix_cache: bool
) -> None:
    """Vectors read during the prefill equal the extraction engine's, inside the shared prefix
    and after it."""
    from taskvec.model.engine import Extractor
    from taskvec.model.generation import Reading
    from taskvec.prompts.item import Item

    ids, eos, refs = eos_case
    # 45 lies in the nested prefix
    indices = [[len(p) - 1, 0, min(45, len(p) - 3), len(p) - 2] for p in ids]
    settings = Generation(max_new_tokens=MAX_NEW, do_sample=False)
    gen = Generator(
        model, settings, eos, 3, prefix_cache=prefix_cache, reading=Reading([0, 2], indices)
    )
    got = {f.idx: f for f in gen.run(ids)}
    assert [got[i].tokens for i in range(len(ids))] == refs, "reading changes no output"
    engine = Extractor(model, [0, 2], max_batch_tokens=4096, batch_size=4, prefix_cache=False)
    expected = {
        i: v
        for b in engine.run([Item(i, p, indices[i]) for i, p in enumerate(ids)])
        for i, v in zip(b.idxs, b.vectors)
    }
    for i in range(len(ids)):
        vec = got[i].vectors
        assert vec is not None and vec.shape == (2, 4, 64) and vec.dtype == torch.float32
        torch.testing.assert_close(vec, expected[i], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("batch_size", [16, 32])
def test_prompt_lookup_drafts_leave_greedy_tokens_unchanged(
    model: torch.nn.Module, batch_size: int
) -> None:
    """40 free-running tokens (the tiny models fall into loops the drafts predict): some drafts
    are accepted, some rejected and masked out, and every token still equals bs1 `generate`;
    `draft_tokens=0` checks none."""
    ids = prompts()
    refs = [reference(model, p, [], 40) for p in ids]
    settings = Generation(max_new_tokens=40, do_sample=False)
    plain, drafted = (Generator(model, settings, [], batch_size, draft_tokens=n) for n in (0, 8))
    for gen in (plain, drafted):
        got = {f.idx: f.tokens for f in gen.run(ids)}
        assert [got[i] for i in range(len(ids))] == refs
    assert plain.stats.draft_tokens == 0
    assert drafted.stats.draft_tokens > drafted.stats.accepted_tokens > 0


def test_drafts_never_make_a_step_wider_than_the_batch(model: torch.nn.Module) -> None:
    """Per step, rows times (1 + drafts) stays within `batch_size` tokens: a full batch checks no drafts,
    fewer rows check some."""
    gen = Generator(model, Generation(max_new_tokens=40, do_sample=False), [], 4)
    shapes: list[tuple[int, int]] = []
    original = gen.model.forward

    def spy(*args: object, **kwargs: torch.Tensor) -> object:
        # a decode step (a prefill keeps one)
        if kwargs["logits_to_keep"] == kwargs["input_ids"].shape[1]:
            shapes.append(tuple(kwargs["input_ids"].shape))  # type: ignore[arg-type]
        return original(*args, **kwargs)

    gen.model.forward = spy  # type: ignore[method-assign]
    try:
        list(gen.run(prompts()[:6]))
    finally:
        del gen.model.forward
    assert (4, 1) in shapes and all(rows * width <= 4 for rows, width in shapes)
    assert any(width > 1 for _, width in shapes)
