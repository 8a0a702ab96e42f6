"""What does a vector say in the model's own vocabulary? A logit lens of task vectors.

Each task vector (or the difference of two sessions' task vectors) goes through the
model's final norm and unembedding, and nothing else (`model.unembed`): the top tokens
per layer and position. Where the session's samples have gold answers, each sample's own
per-sample vector is read the same way, and the rank and probability of its gold answer's
first token (the better of its forms with and without a leading space, as patching scores
answers) are summarised per layer and position.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from taskvec.analysis.lens_plot import plot_gold, plot_tokens
from taskvec.analysis.plotting import session_labels
from taskvec.analysis.results import LensResult
from taskvec.analysis.samples import session_samples
from taskvec.errors import TaskvecError
from taskvec.model.loading import ModelRef, load_tokenizer, resolve_model
from taskvec.model.unembed import Unembedding, load_unembedding
from taskvec.positions import VectorKey
from taskvec.prompts.tokens import first_token_forms
from taskvec.session.reader import Session


def readable(token: str) -> str:
    """A token as a person can read it in a table: leading/trailing spaces and newlines made visible."""
    shown = token.replace(" ", "\u2423").replace("\n", "\\n").replace("\t", "\\t")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in shown) or "''"


@functools.lru_cache(maxsize=2)
def _reader(ref: ModelRef) -> tuple[Unembedding, PreTrainedTokenizerBase]:
    """The unembedding and tokenizer of a model, kept for the next lens of the same model (a report)."""
    return load_unembedding(ref), load_tokenizer(ref)


def lens_keys(session: Session, layers: Sequence[int] | None, position: str | None) -> list[str]:
    """The session's keys at `layers` (negative counts from the end; default all) and `position`
    (default all)."""
    depth = session.info.n_model_layers or 0
    wanted = None if layers is None else {la + depth if la < 0 else la for la in layers}
    keys = [
        str(k)
        for k in session.vector_keys
        if (wanted is None or k.layer in wanted)
        and (position is None or str(k.position) == position)
    ]
    if not keys:
        raise TaskvecError(
            f"lens: session '{session.name}' has no vectors at layers {sorted(wanted or [])} "
            f"position {position or 'any'}; it has layers {session.layers} and positions {session.positions}"
        )
    return keys


def session_golds(session: Session) -> tuple[dict[str, str], str]:
    """`sample_id -> gold answer text` of the session's samples, and a note saying why there are none."""
    samples, note = session_samples(session)
    golds = {sid: s.answer_text for sid, s in samples.items() if s.answer_text}
    return golds, note or ("" if golds else "the session's samples have no gold answers")


def top_tokens(
    unembed: Unembedding, tokenizer: PreTrainedTokenizerBase, vector: torch.Tensor, top: int
) -> list[dict[str, object]]:
    """The `top` tokens of one vector: rank (1-based), id, text, probability and logit."""
    logits = unembed.logits(vector)
    probs = logits.softmax(-1)
    values, ids = logits.topk(top)
    return [
        {
            "rank": r + 1,
            "token_id": int(t),
            "token": readable(str(tokenizer.decode([int(t)]))),
            "prob": float(probs[t]),
            "logit": float(v),
        }
        for r, (v, t) in enumerate(zip(values, ids))
    ]


def gold_ranks(
    unembed: Unembedding, vectors: torch.Tensor, forms: list[list[int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample: the 1-based rank of its best gold first-token form, that token's probability
    and its id."""
    logits = unembed.logits(vectors)
    probs = logits.softmax(-1)
    ranks, chosen, best_ids = [], [], []
    for row, ids in enumerate(forms):
        gold = logits[row, ids]
        best = ids[int(gold.argmax())]
        ranks.append(int((logits[row] > logits[row, best]).sum()) + 1)
        chosen.append(float(probs[row, best]))
        best_ids.append(best)
    return np.array(ranks), np.array(chosen), np.array(best_ids)


def _gold_tables(
    session: Session,
    keys: list[str],
    unembed: Unembedding,
    tokenizer: PreTrainedTokenizerBase,
    golds: dict[str, str],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per key (n, mean/median rank, mean probability, top-1/top-10 shares) and per sample."""
    rows = [i for i, sid in enumerate(session.sample_ids) if sid in golds]
    ids = [session.sample_ids[i] for i in rows]
    forms = [first_token_forms(tokenizer, golds[sid]) for sid in ids]
    keep = [j for j, f in enumerate(forms) if f]
    summary, samples = [], []
    for key in keys:
        parsed = VectorKey.parse(key)
        vectors = session.vectors(key)[[rows[j] for j in keep]]
        ranks, probs, best = gold_ranks(unembed, vectors, [forms[j] for j in keep])
        summary.append(
            {
                "key": key,
                "layer": parsed.layer,
                "position": str(parsed.position),
                "n": len(ranks),
                "mean_rank": ranks.mean(),
                "median_rank": float(np.median(ranks)),
                "q25_rank": float(np.quantile(ranks, 0.25)),
                "q75_rank": float(np.quantile(ranks, 0.75)),
                "mean_prob": probs.mean(),
                "top1": (ranks == 1).mean(),
                "top10": (ranks <= 10).mean(),
            }
        )
        for j, r, p, t in zip(keep, ranks, probs, best):
            gold_token = readable(str(tokenizer.decode([int(t)])))
            samples.append(
                {"key": key, "sample_id": ids[j], "gold": golds[ids[j]], "gold_token": gold_token}
                | {"rank": int(r), "prob": float(p)}
            )
    return pd.DataFrame(summary), pd.DataFrame(samples)


def _check_minus(session: Session, minus: Session, keys: list[str]) -> None:
    """OTHER must have every key read and vectors of the same width."""
    missing = [k for k in keys if k not in minus.keys]
    if missing:
        raise TaskvecError(
            f"lens: session '{minus.name}' has no vectors at {', '.join(missing)}; "
            f"it has keys {', '.join(minus.keys)}"
        )
    widths = {s.name: s.mean(keys[0]).shape[0] for s in (session, minus)}
    if len(set(widths.values())) > 1:
        raise TaskvecError(f"lens: --minus needs sessions of one model (hidden sizes {widths})")


def lens(
    session: Session,
    out: Path,
    minus: Session | None = None,
    layers: Sequence[int] | None = None,
    position: str | None = None,
    top: int = 10,
) -> LensResult:
    """The top tokens of each task vector (minus `minus`'s) per layer and position; writes
    lens_tokens.csv and lens_tokens.png.

    The result's `gold` is the per-key gold-rank summary (lens_gold.csv, lens_gold_samples.csv and
    lens_gold_rank.png; empty, with `note` saying why, when there are no gold answers).
    """
    if top < 1:
        raise TaskvecError(f"lens: --top must be at least 1 (got {top})")
    keys = lens_keys(session, layers, position)
    if minus is not None:
        _check_minus(session, minus, keys)
    ref = resolve_model(session.info.model)
    unembed, tokenizer = _reader(ref)
    if unembed.weight.shape[1] != session.mean(keys[0]).shape[0]:
        raise TaskvecError(
            f"lens: the model '{ref.spec}' has hidden size {unembed.weight.shape[1]}, the session's vectors "
            f"{session.mean(keys[0]).shape[0]}; the session was made with another model"
        )
    top = min(top, unembed.weight.shape[0])
    rows = []
    for key in keys:
        parsed = VectorKey.parse(key)
        vector = session.mean(key) - (minus.mean(key) if minus is not None else 0)
        for t in top_tokens(unembed, tokenizer, vector, top):
            rows.append({"key": key, "layer": parsed.layer, "position": str(parsed.position)} | t)
    table = pd.DataFrame(rows)
    labels = session_labels([session] + ([minus] if minus is not None else []))
    title = labels[0] if minus is None else f"{labels[0]} minus {labels[1]}"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "lens_tokens.csv", index=False)
    plots = [plot_tokens(table, title, out / "lens_tokens.png")]
    golds, note = session_golds(session)
    gold = pd.DataFrame()
    if golds:
        gold, per_sample = _gold_tables(session, keys, unembed, tokenizer, golds)
        gold.to_csv(out / "lens_gold.csv", index=False)
        per_sample.to_csv(out / "lens_gold_samples.csv", index=False)
        vocab = unembed.weight.shape[0]
        plots.append(plot_gold(gold, labels[0], vocab, out / "lens_gold_rank.png"))
    return LensResult(
        table=table,
        csv=out / "lens_tokens.csv",
        plots=tuple(plots),
        gold=gold,
        note=note,
        tied=unembed.tied,
    )
