"""Turn pydantic validation errors into one line that names the field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from taskvec.errors import TaskvecError

M = TypeVar("M", bound=BaseModel)


def _field_names(model: type[BaseModel] | None) -> str:
    return ", ".join(model.model_fields) if model is not None else ""


def describe_validation_error(exc: ValidationError, where: str, model: type[BaseModel] | None = None) -> str:
    """The first error of `exc` as `where: field 'x': problem; fix`."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _field_names(model)
        hint = f" (allowed keys: {allowed})" if allowed and len(err["loc"]) == 1 else ""
        return f"{where}: unknown key '{loc}'; remove it or fix its spelling{hint}"
    if kind == "missing":
        return f"{where}: field '{loc}' is required; add it"
    got = err.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) or len(repr(got)) < 60 else type(got).__name__
    extra = f" ({exc.error_count() - 1} more error(s))" if exc.error_count() > 1 else ""
    return f"{where}: field '{loc}': {err['msg']} (got {shown}); fix that value{extra}"


def load_yaml_model(path: Path, model: type[M], what: str, missing: str) -> M:
    """Read a YAML mapping and validate it as `model`; every failure is one line naming `what` (`missing`: the fix for no file)."""
    if not path.is_file():
        raise TaskvecError(missing)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise TaskvecError(f"{what} '{path}': not valid YAML ({exc.__class__.__name__}); fix the syntax") from exc
    if not isinstance(raw, dict):
        raise TaskvecError(f"{what} '{path}': expected a mapping of fields, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise TaskvecError(describe_validation_error(exc, f"{what} '{path}'", model)) from exc
    except TaskvecError as exc:  # raised by a field validator that already says what to do
        raise TaskvecError(f"{what} '{path}': {exc}") from exc
