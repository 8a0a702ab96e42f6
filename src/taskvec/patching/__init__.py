"""Task-vector patching (Hendel et al. 2023, "In-Context Learning Creates Task Vectors").

The task vector of layer L is the mean last-token output of block L over few-shot
prompts. Run a zero-shot prompt and, during its prefill, replace the hidden state of
its last token at the output of block L by that vector (or add `scale` times it); if the
model now answers like the few-shot prompt, the vector carried the task. Layers are swept
on a dev split; each task is tested at its own best dev layer and at the best layer of
the mean curve (`layer_choice` picks the headline), next to zero-shot and few-shot
accuracy. A layer is "best" only if it beats zero-shot on dev; otherwise the sweep
reports no effect. Answers are scored by their greedy continuation (`scoring.py`).

Speed (`taskvec.model.batched`): prompts sharing a prefix (the demonstrations, the system
prompt) reuse its KV cache via the extraction engine's prefix tree; a batch of zero-shot
prompts runs once up to its last tokens, which then run as 1 + n_layers rows each, one
patched per swept layer; greedy decoding goes on only while a row can still be right.

Modules, in the order a run uses them: `config` (the schema, light: no torch), `prompts`
(each task's token ids, before any weights load), `sweep` (dev sweep and test),
`summary` (patching.json and the CLI's table), `plot` (patching.png), `run` (the flow).
"""
