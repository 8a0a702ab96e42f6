"""Steering during generation, measured by the evaluation (`taskvec steer`).

A task vector (an expression over sessions, `"COT5 - VAN5"`) changes the residual stream at the
output of chosen blocks while the evaluation engine generates: `add` h + s*v, `ablate` (remove h's
component along v, then add s*v) or `replace` h = v, at the last prompt token, every prompt
token, every generated token or all. The unsteered baseline and every (layer, scale) condition,
with its seeded random-direction control if asked for, run in one batched generation; each
condition's predictions are scored by the evaluation's parse and by patching's prefix rule.

Modules, in the order a run uses them: `config` (the schema, light: no torch), `conditions`
(the baseline, the sweep, the controls), `run` (the flow), `summary` (scores and the CLI's
table), `schema` (steering.json), `plot` (steering.png).
"""
