"""Worked rationales for one-word tasks, derived from the facts so that every one is true.

A chain-of-thought demonstration needs a rationale before its answer sentence; the word
tasks have none in their tables, so they are generated here, one rule per task, from the
(input, answer) pair alone. A rationale ends with the answer and stops before the answer
sentence, which the prompt renderer appends from the config's `answer_format`.
"""

from __future__ import annotations

_VOWELS = set("aeiou")


def _ends_consonant_y(verb: str) -> bool:
    return len(verb) >= 2 and verb.endswith("y") and verb[-2] not in _VOWELS


def past_tense_rationale(verb: str, past: str) -> str:
    """Why `past` is the past tense of `verb`: a regular spelling rule, or that the verb is irregular.

    The verb is *regular* when its past tense is the base plus -ed by one of the spelling
    rules (walk -> walked; live -> lived after a final -e; carry -> carried after a consonant
    and -y; stop -> stopped with the final consonant doubled); any other pair (go -> went,
    cut -> cut, hear -> heard, pay -> paid) is *irregular*. The rule is read off the pair
    itself, so no word list can disagree with the data.
    """
    if past == verb + "ed":
        return f"{verb} is a regular verb, so add -ed: {past}."
    if verb.endswith("e") and past == verb + "d":
        return f"{verb} is a regular verb ending in -e, so add -d: {past}."
    if _ends_consonant_y(verb) and past == verb[:-1] + "ied":
        return (
            f"{verb} is a regular verb ending in a consonant and -y, "
            f"so change -y to -i and add -ed: {past}."
        )
    if verb[-1] not in _VOWELS and past == verb + verb[-1] + "ed":
        return f"{verb} is a regular verb whose final {verb[-1]} doubles before -ed: {past}."
    return f"{verb} is an irregular verb; its past tense is {past}."
