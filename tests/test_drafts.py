"""Prompt-lookup drafts: what followed the latest earlier occurrence of the context's tail."""

from __future__ import annotations

import numpy as np

from taskvec.model.drafts import lookup


def test_the_latest_occurrence_of_the_longest_tail_wins() -> None:
    context = np.array([5, 6, 7, 1, 9, 9, 6, 7, 2, 3, 4, 8, 6, 7])
    assert lookup(context, 3) == [2, 3, 4]  # "6 7" last occurred before "2 3 4", not before "1"
    assert lookup(np.array([1, 2, 3, 9, 2, 3, 8, 5, 2, 3]), 2) == [8, 5]
    assert lookup(np.array([4, 2, 3, 1, 7, 2, 3]), 1) == [1]


def test_a_loop_is_continued_past_the_end() -> None:
    assert lookup(np.array([3, 0, 0, 0]), 5) == [0, 0, 0, 0, 0]
    assert lookup(np.array([9, 1, 2, 1, 2]), 4) == [1, 2, 1, 2]


def test_no_occurrence_or_no_room_gives_no_drafts() -> None:
    assert lookup(np.array([1, 2, 3, 4]), 5) == []
    assert lookup(np.array([1, 1, 1]), 0) == []
    assert lookup(np.array([7]), 3) == []
