"""The model's final norm and unembedding, and nothing else: what a logit lens runs.

The architecture comes from the model's config (a skeleton on the meta device, so no
weights are allocated); only the final norm and the output matrix are read from disk:
from a GGUF file `output_norm.*` and `output.weight` (dequantised by the `gguf` package),
from safetensors the tensors the skeleton names. A model without its own output matrix
(tied embeddings) is read through its token embedding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, PretrainedConfig

from taskvec.errors import TaskvecError
from taskvec.model.loading import ModelRef, load_model_config

FINAL_NORM_NAMES = ("norm", "final_layernorm", "ln_f", "norm_f", "final_norm")
GGUF_NAMES = {"norm": "output_norm", "head": "output", "embed": "token_embd"}


@dataclass
class Unembedding:
    """`logits(h)`: block output `h` (..., hidden) -> final norm -> output matrix (..., vocab),
    float32 on the CPU."""

    norm: torch.nn.Module
    weight: torch.Tensor  # (vocab, hidden)
    tied: bool

    @torch.no_grad()
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(hidden.float()) @ self.weight.T


def _skeleton(config: PretrainedConfig) -> torch.nn.Module:
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def _final_norm(model: torch.nn.Module) -> tuple[str, torch.nn.Module]:
    """The qualified name and module of the norm applied after the last block."""
    base = getattr(model, "base_model", model)
    names = {module: name for name, module in model.named_modules()}
    for attr in FINAL_NORM_NAMES:
        module = getattr(base, attr, None)
        if isinstance(module, torch.nn.Module):
            return names[module], module
    raise TaskvecError(
        f"lens: cannot find the final norm of {type(model).__name__} "
        f"(looked for {', '.join(FINAL_NORM_NAMES)} on its base model)"
    )


def _head_names(model: torch.nn.Module) -> tuple[list[str], list[str]]:
    """Every name of the output matrix and of the token embedding (one shared list when they are tied)."""
    head: torch.nn.Module | None = model.get_output_embeddings()  # type: ignore[operator]
    embed: torch.nn.Module = model.get_input_embeddings()  # type: ignore[operator]
    if head is None:
        raise TaskvecError(f"lens: {type(model).__name__} has no output embedding (no LM head)")
    named = list(model.named_parameters(remove_duplicate=False))
    return (
        [n for n, p in named if p is head.weight],
        [n for n, p in named if p is embed.weight],
    )


def _gguf_tensors(path: Path, wanted: set[str]) -> dict[str, torch.Tensor]:
    """The named tensors of a GGUF file, dequantised to float32 (the file is memory-mapped; the
    other tensors are not read)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(path)
    out = {}
    for tensor in reader.tensors:
        if tensor.name in wanted:
            values = dequantize(tensor.data, tensor.tensor_type)
            shape = [int(d) for d in reversed(tensor.shape.tolist())]
            out[tensor.name] = torch.from_numpy(np.array(values, dtype=np.float32).reshape(shape))
    return out


def _safetensors_files(ref: ModelRef) -> list[Path]:
    """The checkpoint's safetensors files: from a local directory, else from the Hub (its cache
    when offline)."""
    folder = Path(ref.source)
    if folder.is_dir():
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise TaskvecError(
                f"lens: '{folder}' has no .safetensors weights; the lens reads the final norm and "
                "unembedding from safetensors or GGUF files"
            )
        return files
    from huggingface_hub import hf_hub_download

    try:
        index = hf_hub_download(
            ref.source, "model.safetensors.index.json", local_files_only=ref.offline
        )
        shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
    except Exception:
        shards = ["model.safetensors"]
    try:
        return [Path(hf_hub_download(ref.source, s, local_files_only=ref.offline)) for s in shards]
    except Exception as exc:
        raise TaskvecError(
            f"lens: cannot fetch the weights of '{ref.source}' ({type(exc).__name__}); "
            "download the model (`hf download ID --local-dir DIR`) and pass the directory"
        ) from exc


def _safetensors_tensors(files: list[Path], wanted: set[str]) -> dict[str, torch.Tensor]:
    """Just the named tensors, whichever shard holds them (other tensors are not read)."""
    from safetensors import safe_open

    out = {}
    for path in files:
        with safe_open(path, framework="pt") as f:
            for name in wanted & set(f.keys()):
                out[name] = f.get_tensor(name).float()
    return out


def _fill_norm(norm: torch.nn.Module, prefix: str, tensors: dict[str, torch.Tensor]) -> None:
    norm.to_empty(device="cpu")
    state = {k: tensors[f"{prefix}.{k}"] for k in norm.state_dict() if f"{prefix}.{k}" in tensors}
    missing = set(norm.state_dict()) - set(state)
    if missing:
        raise TaskvecError(f"lens: the checkpoint lacks the final norm's {sorted(missing)}")
    norm.load_state_dict(state)
    norm.float().eval().requires_grad_(False)


def _checkpoint_tensors(
    ref: ModelRef, norm_name: str, norm: torch.nn.Module, names: list[str]
) -> dict[str, torch.Tensor]:
    """The final norm's tensors (under the skeleton's names) and whichever of `names` the checkpoint has;
    a GGUF's `output.weight` and `token_embd.weight` come under the names `output` and `embed`."""
    if not ref.gguf_file:
        wanted = {f"{norm_name}.{k}" for k in norm.state_dict()} | set(names)
        return _safetensors_tensors(_safetensors_files(ref), wanted)
    g = GGUF_NAMES
    found = _gguf_tensors(
        Path(ref.source) / ref.gguf_file,
        {f"{g['norm']}.weight", f"{g['norm']}.bias", f"{g['head']}.weight", f"{g['embed']}.weight"},
    )
    renamed = {
        "output": found.get(f"{g['head']}.weight"),
        "embed": found.get(f"{g['embed']}.weight"),
    }
    norms = {
        f"{norm_name}.{k.split('.')[-1]}": v for k, v in found.items() if k.startswith(g["norm"])
    }
    return norms | {k: v for k, v in renamed.items() if v is not None}


def load_unembedding(ref: ModelRef) -> Unembedding:
    """Read the final norm and the output matrix of `ref` (GGUF, local directory or Hub id); no
    block is loaded.

    Tied: the skeleton shares one matrix between the LM head and the token embedding, or a GGUF has no
    `output.weight` (llama.cpp's convention); then the token embedding is the unembedding.
    """
    skeleton = _skeleton(load_model_config(ref))
    norm_name, norm = _final_norm(skeleton)
    head_names, embed_names = _head_names(skeleton)
    tensors = _checkpoint_tensors(ref, norm_name, norm, head_names + embed_names)
    _fill_norm(norm, norm_name, tensors)
    if ref.gguf_file:
        head_names, embed_names = ["output"], ["embed"]
    tied = set(head_names) == set(embed_names) or not any(n in tensors for n in head_names)
    if tied and not ref.gguf_file and set(head_names) != set(embed_names):
        raise TaskvecError(
            f"lens: the checkpoint of '{ref.spec}' lacks the LM head {head_names[0]}"
        )
    weight = next((tensors[n] for n in (embed_names if tied else head_names) if n in tensors), None)
    if weight is None:
        raise TaskvecError(
            f"lens: the checkpoint of '{ref.spec}' lacks {(embed_names + head_names)[0]}"
        )
    return Unembedding(norm, weight, tied)
