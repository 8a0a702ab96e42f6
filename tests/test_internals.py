"""Every framework internal in docs/internals.md exists in the installed torch and transformers."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from taskvec.model.attention import use_shared_prefix_attention
from taskvec.model.kvcache import cache_kw
from tests.tiny import make_model

DOC = Path(__file__).parents[1] / "docs" / "internals.md"


def _resolve(dotted: str) -> object:
    """`a.b.c` imported as far as it is a module, then read as attributes."""
    parts = dotted.split(".")
    obj: object = __import__(parts[0])
    for i, part in enumerate(parts[1:], 1):
        if not hasattr(obj, part):
            __import__(".".join(parts[: i + 1]))
        obj = getattr(obj, part)
    return obj


def _dynamic_layer() -> None:
    layer = DynamicLayer()
    k = torch.zeros(1, 2, 3, 4)
    keys, values = layer.update(k, k)
    assert keys.shape == (1, 2, 3, 4) and values.shape == (1, 2, 3, 4)
    for name in ("keys", "values", "is_initialized", "device"):
        assert hasattr(layer, name), name


def _cache_layers() -> None:
    cache = DynamicCache(ddp_cache_data=[(torch.zeros(1, 2, 3, 4), torch.ones(1, 2, 3, 4))])
    assert len(cache.layers) == 1 and torch.equal(cache.layers[0].values, torch.ones(1, 2, 3, 4))


def _attn_implementation() -> None:
    """An sdpa model reads as sdpa, and switching it shows the new name."""
    model = make_model("qwen2", n_layers=1)
    assert model.config._attn_implementation == "sdpa"
    with use_shared_prefix_attention(model) as shared:
        assert shared and model.config._attn_implementation == "taskvec"


def _cache_keyword() -> None:
    model = make_model("llama", n_layers=1)
    assert cache_kw(model) in inspect.signature(model.forward).parameters


CHECKS: dict[str, Callable[[], None]] = {
    "transformers.AttentionInterface.register": lambda: None,
    "transformers.masking_utils.AttentionMaskInterface.register": lambda: None,
    "transformers.masking_utils.sdpa_mask": lambda: None,
    "transformers.integrations.sdpa_attention.sdpa_attention_forward": lambda: None,
    "transformers.PreTrainedModel.set_attn_implementation": lambda: None,
    "transformers.PretrainedConfig._attn_implementation": _attn_implementation,
    "transformers.cache_utils.DynamicLayer": _dynamic_layer,
    "transformers.DynamicCache.layers": _cache_layers,
    "transformers.DynamicCache(ddp_cache_data=...)": _cache_layers,
    "forward keyword `cache` / `past_key_values`": _cache_keyword,
    "torch.ops.aten._scaled_dot_product_flash_attention_for_cpu": lambda: None,
    "torch.ops.mkldnn._reorder_linear_weight": lambda: None,
    "torch.ops.mkldnn._linear_pointwise": lambda: None,
}


def _documented() -> list[str]:
    """The first column of the table in docs/internals.md, without its outer backticks."""
    rows = re.findall(r"^\| (.+?) \| `", DOC.read_text(), flags=re.M)
    return [row[1:-1] if row.startswith("`") and row.count("`") == 2 else row for row in rows]


def test_doc_and_checks_name_the_same_internals() -> None:
    assert _documented() == list(CHECKS)


@pytest.mark.parametrize("name", list(CHECKS))
def test_internal_exists(name: str) -> None:
    if re.fullmatch(r"[\w.]+", name):
        target = _resolve(name.removesuffix(".layers").removesuffix("._attn_implementation"))
        assert target is not None, name
    CHECKS[name]()
