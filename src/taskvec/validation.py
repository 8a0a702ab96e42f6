"""Turn pydantic validation errors into one line that names the field and the fix."""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from taskvec.errors import TaskvecError

M = TypeVar("M", bound=BaseModel)


def _allowed_keys(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed where the unknown key `loc` sits (nested models included)."""
    for part in loc[:-1]:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return []
        annotation = model.model_fields[part].annotation
        candidates = [
            a
            for a in typing.get_args(annotation) or (annotation,)
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        model = candidates[0] if candidates else None
    return list(model.model_fields) if model is not None else []


def _unknown_key(err: ErrorDetails, where: str, model: type[BaseModel] | None) -> str:
    """`unknown key 'layrs'; did you mean 'layers'?` with the keys allowed at that level."""
    loc = ".".join(str(p) for p in err["loc"])
    allowed = _allowed_keys(model, err["loc"])
    close = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1, cutoff=0.6)
    fix = f"did you mean '{close[0]}'?" if close else "remove it or fix its spelling"
    listed = f" (allowed keys: {', '.join(allowed)})" if allowed else ""
    return f"{where}: unknown key '{loc}'; {fix}{listed}"


def describe_validation_error(
    exc: ValidationError, where: str, model: type[BaseModel] | None = None
) -> str:
    """One error of `exc` as `where: field 'x': problem; fix`; unknown keys first (a typo also
    makes a field look missing)."""
    errors = exc.errors()
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        return _unknown_key(unknown[0], where, model)
    err = errors[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    if kind == "missing":
        return f"{where}: field '{loc}' is required; add it"
    got = err.get("input")
    shown = (
        repr(got)
        if not isinstance(got, (dict, list)) or len(repr(got)) < 60
        else type(got).__name__
    )
    extra = f" ({exc.error_count() - 1} more error(s))" if exc.error_count() > 1 else ""
    return f"{where}: field '{loc}': {err['msg']} (got {shown}); fix that value{extra}"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """`not valid YAML at line L, column C: <the parser's problem>` (1-based, as editors count)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML{where}: {problem}"


def load_yaml_model(path: Path, model: type[M], what: str, missing: str) -> M:
    """Read a YAML mapping and validate it as `model`; every failure is one line naming `what`
    (`missing`: the fix for no file)."""
    if not path.is_file():
        raise TaskvecError(missing)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise TaskvecError(f"{what} '{path}': {_yaml_problem(exc)}; fix the syntax") from exc
    if not isinstance(raw, dict):
        raise TaskvecError(
            f"{what} '{path}': expected a mapping of fields, got {type(raw).__name__}"
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise TaskvecError(describe_validation_error(exc, f"{what} '{path}'", model)) from exc
    except TaskvecError as exc:  # raised by a field validator that already says what to do
        raise TaskvecError(f"{what} '{path}': {exc}") from exc
