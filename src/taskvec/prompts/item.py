"""A tokenised prompt and the tokens to read from it: what prompt building hands to the model and
the session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Item:
    """One tokenised prompt and the absolute token indices to read, in position order."""

    idx: int
    ids: Sequence[int] | np.ndarray  # a list, or an int32 array (4 bytes a token, for large runs)
    token_indices: Sequence[int]
