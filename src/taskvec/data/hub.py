"""Load samples from a Hugging Face Hub dataset (`source: hf`), mapped by `dataset.fields`.

`datasets` is an optional dependency (`pip install 'taskvec[hf]'`) imported only here,
on first use. Split names are passed to `datasets.load_dataset` as given, so slices
such as "test[:100]" work too.
"""

from __future__ import annotations

from types import ModuleType

from taskvec.data.base import DatasetConfig, Sample
from taskvec.data.files import records_to_samples
from taskvec.data.sources import Source, register
from taskvec.errors import TaskvecError


def _datasets() -> ModuleType:
    try:
        import datasets
    except ImportError as exc:
        raise TaskvecError(
            "source: hf needs the `datasets` package; install it with pip install 'taskvec[hf]'"
        ) from exc
    return datasets


def _name(cfg: DatasetConfig) -> str:
    if not cfg.name:
        raise TaskvecError(
            "source: hf needs `dataset.name` (a Hugging Face dataset id such as 'owner/name'); set it"
        )
    return cfg.name


def _reason(exc: Exception) -> str:
    """The first line of an exception's message, for a one-line error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unreachable(name: str, exc: Exception) -> TaskvecError:
    """The error for a dataset that could not be fetched (offline, unknown name, no access)."""
    return TaskvecError(
        f"cannot load Hugging Face dataset '{name}' ({_reason(exc)}); if offline, download it "
        "elsewhere and use "
        "`source: file` with a local `path`"
    )


def hub_splits(cfg: DatasetConfig) -> list[str]:
    """The split names the Hub dataset declares (needs the Hub or a local cache)."""
    name, datasets = _name(cfg), _datasets()
    try:
        return list(datasets.get_dataset_split_names(name))
    except (
        Exception
    ) as exc:  # datasets raises many types (network, auth, missing); all mean "can't reach it"
        raise _unreachable(name, exc) from exc


def load_hub_split(cfg: DatasetConfig, split: str) -> list[Sample]:
    """Samples of `split` of the Hub dataset `dataset.name`."""
    name, datasets = _name(cfg), _datasets()
    try:
        rows = datasets.load_dataset(name, split=split)
    except ValueError as exc:
        if "split" not in str(exc).lower():
            raise _unreachable(name, exc) from exc
        raise TaskvecError(
            f"Hugging Face dataset '{name}' has no split '{split}' ({_reason(exc)}); fix the split name"
        ) from exc
    except Exception as exc:  # network, auth and not-found errors all mean "can't reach it"
        raise _unreachable(name, exc) from exc
    return records_to_samples(
        rows, cfg.fields, split, f"Hugging Face dataset '{name}'", cfg.answer_type == "text"
    )


register(
    Source("hf", hub_splits, lambda cfg, split, _base_dir: load_hub_split(cfg, split), online=True)
)
