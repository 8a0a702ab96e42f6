"""Draft tokens for greedy decoding by prompt lookup: what followed the latest earlier occurrence of
the row's last words.

A row's context (its prompt and what it has generated) often repeats itself: numbers copied
from the question, the demonstrations' phrasing ("is calculated by dividing"), a degenerate
loop. The drafts are the tokens that followed the most recent earlier occurrence of the
context's last n tokens (n from `MAX_NGRAM` down to 1), continued periodically when that
occurrence runs into the end. A decode step checks them all at once (transformers' prompt
lookup decoding, `prompt_lookup_num_tokens`, does the same for one row at a time).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

MAX_NGRAM = 3


def lookup(context: np.ndarray, limit: int) -> list[int]:
    """Up to `limit` tokens predicted to follow `context` (1-D token ids); none when its tail
    occurred nowhere before."""
    if limit <= 0:
        return []
    for n in range(min(MAX_NGRAM, len(context) - 1), 0, -1):
        hits = np.flatnonzero((sliding_window_view(context[:-1], n) == context[-n:]).all(axis=1))
        if hits.size:
            extended, start = context.tolist(), int(hits[-1]) + n
            # past the end it copies its own drafts: a loop continues as a loop
            for j in range(limit):
                extended.append(extended[start + j])
            return extended[len(context) :]
    return []
