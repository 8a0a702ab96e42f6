"""Turn pydantic validation errors into one line that names the field and the fix."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError


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
