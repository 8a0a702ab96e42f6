"""The generation loop of an evaluation: every sample not yet done through the generator, each
prediction appended to the log as its sample finishes."""

from __future__ import annotations

import re
from typing import Any

from transformers import PreTrainedModel

from taskvec.evaluation.joint import SessionSink
from taskvec.evaluation.predictions import PredictionLog
from taskvec.evaluation.prepare import EvalPrepared
from taskvec.evaluation.progress import Progress, Work
from taskvec.evaluation.rows import score_prediction
from taskvec.evaluation.stopping import eos_ids
from taskvec.model import prefill
from taskvec.model.generation import GenerationStats, Generator


def generate_rows(
    prep: EvalPrepared,
    model: PreTrainedModel,
    log: PredictionLog,
    rows: dict[int, dict[str, Any]],
    skip: set[int],
    stop: re.Pattern[str] | None,
    progress: bool,
    sink: SessionSink | None,
) -> GenerationStats:
    """Generate every sample not in `skip`, appending each prediction to the log as it finishes
    (and, with a `sink`, its prefill's hidden states to the extraction session)."""
    o = prep.options
    generator = Generator(
        model,
        prep.prompt_config.generation,
        eos_ids(model, prep.tokenizer),
        o.batch_size,
        prep.tokenizer,
        stop,
        o.prefix_cache,
        o.seed,
        reading=sink.reading if sink else None,
        draft_tokens=o.draft_tokens,
    )
    todo = [ids for i, ids in enumerate(prep.ids) if i not in skip]
    plan = prefill.plan(todo, o.prefix_cache).tokens_computed([len(ids) for ids in todo])
    bar = Progress(Work(plan, len(todo), prep.prompt_config.generation.max_new_tokens), progress)
    try:
        for done in generator.run(prep.ids, skip=skip, on_step=bar.step):
            row = rows[done.idx] = score_prediction(done.idx, prep, done, stop)
            try:
                log.append(row)
            except Exception:
                del rows[done.idx]  # not on disk
                raise
            if sink is not None and done.vectors is not None:
                sink.add(done.idx, done.vectors)
            bar.finish(len(done.tokens), generator.stats)
    finally:
        bar.close()
    return generator.stats
