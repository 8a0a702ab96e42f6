"""The split check every flow makes first (no torch): the query and demonstration splits exist."""

from __future__ import annotations

from taskvec.data import available_splits
from taskvec.data.sources import source
from taskvec.errors import TaskvecError
from taskvec.prompts.config import PromptConfig


def check_splits(prompt_cfg: PromptConfig, split: str) -> None:
    """The query split (and the demonstrations' split) exist; an online source's (the Hub's)
    are checked when it loads."""
    if source(prompt_cfg.dataset.source).online:
        return
    splits = available_splits(prompt_cfg.dataset)
    demo = [("demonstrations.split", prompt_cfg.demonstrations.split)] if prompt_cfg.n_shot else []
    for field_name, name in [("split", split), *demo]:
        if name not in splits:
            raise TaskvecError(
                f"{field_name}: '{name}' is not a split of the dataset; use one of: "
                f"{', '.join(splits)}"
            )
