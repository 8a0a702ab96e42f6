"""The lens reads the embedded GGUF's final norm and tied unembedding as the full model uses them."""

from __future__ import annotations

import pytest
import torch

from taskvec.model.capture import decoder_blocks
from taskvec.model.loading import load_model, load_tokenizer, resolve_model
from taskvec.model.unembed import load_unembedding

pytestmark = pytest.mark.integration


def test_lens_of_the_last_block_is_the_models_prediction() -> None:
    ref = resolve_model("smollm2-135m")
    unembed = load_unembedding(ref)
    assert unembed.tied and unembed.weight.shape == (49152, 576)
    model = load_model(ref, torch.float32, torch.device("cpu"))
    tokenizer = load_tokenizer(ref)
    ids = torch.tensor([tokenizer.encode("The capital of France is")])
    captured: list[torch.Tensor] = []
    handle = decoder_blocks(model)[-1].register_forward_hook(
        lambda _m, _i, out: captured.append(out[0] if isinstance(out, tuple) else out)
    )
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
    handle.remove()
    lens_logits = unembed.logits(captured[0][0, -1])
    assert torch.allclose(lens_logits, logits, atol=1e-3, rtol=1e-4)
    assert int(lens_logits.argmax()) == int(logits.argmax())
