"""The samples of a split and their tokenised prompts, chosen the same way for extraction and evaluation."""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedTokenizerBase

from taskvec.data import load_split
from taskvec.data.base import Sample
from taskvec.errors import TaskvecError, warn
from taskvec.prompts.config import PromptConfig
from taskvec.prompts.fewshot import select_demonstrations
from taskvec.prompts.render import RenderedPrompt, render_prompt
from taskvec.prompts.splits import check_splits


def select_samples(
    cfg: PromptConfig, split: str, max_samples: int | None, base_dir: Path
) -> tuple[list[Sample], list[Sample]]:
    """The first `max_samples` of `split` and the demonstration pool; splits are checked before
    anything loads."""
    demo_split = cfg.demonstrations.split
    check_splits(cfg, split)
    split_samples = load_split(cfg.dataset, split, base_dir)
    samples = split_samples[:max_samples]
    if not samples:
        raise TaskvecError(
            f"split: '{split}' has no samples; use a split with data (or a dataset that has some)"
        )
    if not cfg.n_shot:
        return samples, []
    return samples, split_samples if demo_split == split else load_split(
        cfg.dataset, demo_split, base_dir
    )


def warn_if_short(max_samples: int | None, samples: list[Sample], split: str) -> None:
    """Say so when `max_samples` asks for more than the split has (the run uses them all)."""
    if max_samples is not None and max_samples > len(samples):
        warn(
            f"max_samples: {max_samples} asked for, but split '{split}' has {len(samples)} "
            f"samples; using all {len(samples)}"
        )


def build_prompts(
    cfg: PromptConfig, samples: list[Sample], pool: list[Sample], tokenizer: PreTrainedTokenizerBase
) -> list[tuple[RenderedPrompt, list[int]]]:
    """Each sample's rendered prompt and its token ids (with the special tokens the rendering asks for)."""
    out = []
    for sample in samples:
        demos = select_demonstrations(pool, sample, cfg.n_shot, cfg.demonstrations)
        _check_rationales(cfg, demos)
        prompt = render_prompt(cfg, sample, demos, tokenizer)
        out.append(
            (
                prompt,
                list(
                    tokenizer(prompt.text, add_special_tokens=prompt.add_special_tokens)[
                        "input_ids"
                    ]
                ),
            )
        )
    return out


def _check_rationales(cfg: PromptConfig, demos: list[Sample]) -> None:
    """cot demonstrations must show a worked solution; without one the prompt would silently be vanilla."""
    bare = [d.id for d in demos if not d.rationale]
    if cfg.prompt_type == "cot" and bare:
        raise TaskvecError(
            "prompt_type: cot needs a rationale (worked solution) for every demonstration, but "
            f"sample '{bare[0]}' of split "
            f"'{cfg.demonstrations.split}' has none; map the column with "
            "`dataset.fields.rationale`, or use `prompt_type: vanilla`"
        )
