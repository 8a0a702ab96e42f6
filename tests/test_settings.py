"""One run-settings base for the four configs: the same fields, validators and YAML words
everywhere, and every shipped config still validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from taskvec.config import ExtractionConfig
from taskvec.evaluation.options import EvalOptions
from taskvec.patching.config import PatchConfig
from taskvec.prompts.config import PromptConfig
from taskvec.settings import RunSettings
from taskvec.steering.config import SteerConfig

CONFIGS = Path(__file__).parent.parent / "configs"
REQUIRED: dict[type[RunSettings], dict[str, object]] = {
    ExtractionConfig: {"prompt_config": "p.yaml", "layers": [0]},
    EvalOptions: {},
    PatchConfig: {"zero_shot_prompt_config": "z.yaml", "fewshot_prompt_config": "f.yaml"},
    SteerConfig: {"prompt_config": "p.yaml", "vector": "A", "layers": [0]},
}


def _schema(data: dict[str, object]) -> type[BaseModel]:
    if "vector" in data:
        return SteerConfig
    if "zero_shot_prompt_config" in data:
        return PatchConfig
    return ExtractionConfig if "layers" in data else PromptConfig


def test_every_shipped_config_validates() -> None:
    paths = sorted(CONFIGS.rglob("*.yaml"))
    kinds = [_schema(yaml.safe_load(p.read_text())) for p in paths]
    for path, schema in zip(paths, kinds):
        schema.model_validate(yaml.safe_load(path.read_text()))
    assert {ExtractionConfig, PatchConfig, SteerConfig, PromptConfig} <= set(kinds)


@pytest.mark.parametrize("schema", list(REQUIRED))
def test_shared_fields_validate_alike(schema: type[RunSettings]) -> None:
    base = REQUIRED[schema]
    cfg = schema.model_validate({**base, "device": "cuda:1", "dtype": "bfloat16", "tag": "a.b-1"})
    assert (cfg.device, cfg.dtype, cfg.tag, cfg.model) == ("cuda:1", "bfloat16", "a.b-1", None)
    for bad in ({"device": "gpu"}, {"dtype": "float64"}, {"tag": "a/b"}, {"batch_size": 0}):
        with pytest.raises(ValidationError) as err:
            schema.model_validate({**base, **bad})
        assert err.value.errors()[0]["loc"] == (next(iter(bad)),)
    with pytest.raises(ValidationError, match="use auto, cpu, cuda or cuda:N"):
        schema.model_validate({**base, "device": "gpu"})


def test_each_keeps_its_own_defaults() -> None:
    defaults = {
        schema.__name__: (cfg.batch_size, str(cfg.output_dir))
        for schema, required in REQUIRED.items()
        for cfg in [schema.model_validate(required)]
    }
    assert defaults == {
        "ExtractionConfig": (64, "outputs"),
        "EvalOptions": (32, "results"),
        "PatchConfig": (8, "results"),
        "SteerConfig": (128, "results"),
    }


@pytest.mark.parametrize(
    ("written", "on"), [("auto", True), ("off", False), (True, True), (False, False)]
)
def test_prefix_cache_takes_the_words_and_booleans(written: object, on: bool) -> None:
    extraction = ExtractionConfig.model_validate(
        {**REQUIRED[ExtractionConfig], "prefix_cache": written}
    )
    options = EvalOptions.model_validate({"prefix_cache": written})
    assert extraction.prefix_cache is on and options.prefix_cache is on
    # files keep what they always held: the extraction session its word, metrics.json a boolean
    assert extraction.model_dump(mode="json")["prefix_cache"] == ("auto" if on else "off")
    assert options.model_dump(mode="json")["prefix_cache"] is on


def test_prefix_cache_refuses_other_words() -> None:
    with pytest.raises(ValidationError):
        ExtractionConfig.model_validate({**REQUIRED[ExtractionConfig], "prefix_cache": "sometimes"})
