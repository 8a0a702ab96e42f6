"""The base of every written record: lenient on read, and dumped as the dict the file holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

R = TypeVar("R", bound="Record")


class Record(BaseModel):
    """A JSON file's content; keys it does not declare are kept, so a newer file still reads."""

    model_config = ConfigDict(extra="allow")

    def dump(self) -> dict[str, Any]:
        """The dict to write: fields in declared order, only those set (an absent key stays
        absent), values as Python objects so `json.dumps` writes them as it always has."""
        return self.model_dump(exclude_unset=True)

    @classmethod
    def read(cls: type[R], path: Path) -> R:
        """Validate the JSON file at `path` (errors as pydantic raises them; callers word them)."""
        return cls.model_validate(json.loads(path.read_text()))


def first_error(exc: ValidationError) -> str:
    """A validation error's first problem as `field.path: message`, for one-line errors."""
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
