"""The per-layer summary `taskvec compare` prints (the full table is the CSV)."""

from __future__ import annotations

import pandas as pd


def compare_summary(table: pd.DataFrame, n_sessions: int) -> str:
    """One line per layer and position: for one pair the raw and centred cosines, distance/spread,
    CKA and the strategy probe; for several, the cosines and the distance, pairs as columns."""
    order = {label: k for k, label in enumerate(dict.fromkeys(table.session_a))}
    pairs = table[table.session_a.map(order) < table.session_b.map(order)].copy()
    pairs["pair"] = pairs.session_a + " vs " + pairs.session_b
    cols = {
        "cos_means": "cos",
        "samples_cos_centered": "cos_c",
        "distance_spread": "dist/sd",
        "cka": "cka",
        "probe_auc": "probe_auc",
    }
    if n_sessions >= 3:  # several pairs: the cosines and the distance only, so the lines stay short
        cols = {"cos_means": "cos", "cos_centered": "cos_cm", "distance_spread": "dist/sd"}
    names = list(dict.fromkeys(pairs.pair))
    wide = pairs.pivot_table(
        index=["layer", "position"], columns="pair", values=list(cols), sort=False, dropna=False
    )
    if len(names) == 1:
        wide.columns = [cols[c] for c, _ in wide.columns]
        head = f"pair: {names[0]}"
    else:
        tags = {name: f"p{k + 1}" for k, name in enumerate(names)}
        wide.columns = [f"{cols[c]} {tags[p]}" for c, p in wide.columns]
        head = "pairs: " + ", ".join(f"{t} = {n}" for n, t in tags.items())
    text = wide.reset_index().to_string(index=False, float_format=lambda v: f"{v:.3f}")
    legend = (
        "cos_cm: the task vectors with the grand mean subtracted; CKA and the strategy probe "
        "are in the CSV"
        if n_sessions >= 3
        else "cos_c: a's samples to b's task vector, grand mean subtracted"
    )
    return f"{head}\n{legend}\n{text}"
