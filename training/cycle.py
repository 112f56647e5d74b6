"""Cycle-consistency augmentation: invertible instructions also train the reverse edit.

HIVE (cycle consistency augmentation): when an instruction has an inverse ("add a dog" ↔
"remove the dog"), the pair (edited → source, inverse instruction) is a valid training
example too; the paper finds 29.1% of its instructions invertible. The inverse here is
rule based, checked in this order:

1. edits that destroy information ("make it black and white", "crop", style transfers)
   → None: the reverse pair would ask the model to hallucinate what was lost;
2. self-inverse edits (flip, mirror, invert the colours) → the same instruction;
3. object swaps ("replace the dog with a cat" → "replace the cat with a dog");
4. add ↔ remove, with the article and "to"/"from" fixed up;
5. direction words swapped all at once ("brighter and less saturated" →
   "darker and more saturated"); "more X"/"less X" and "zoom in"/"zoom out" swap as a unit
   so the adjective after them is not flipped a second time.

Anything that matches no rule → None (not invertible).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from training.records import EditExample

# Edits whose reverse would have to invent what the edit threw away.
NON_INVERTIBLE = re.compile(
    r"\b(black[ -]and[ -]white|gr[ae]yscale|monochrome|desaturate completely|sepia|sketch|"
    r"drawing|painting|paint|cartoon|anime|watercolou?r|posteri[sz]e|emboss|pixel art|"
    r"in the style of|crop|remove the background|remove the colou?rs?|delete the background)\b"
)

SELF_INVERSE = re.compile(
    r"^(flip|mirror)\b.*$|^invert the colou?rs\b.*$|^rotate (it |the \w+ )?180 degrees$"
)

# "replace the X with a Y", "change the X to a Y", "turn the X into a Y".
OBJECT_SWAP = re.compile(
    r"^(?P<verb>replace|swap|change|turn) (?P<a_art>the |a |an )?(?P<a>.+?) "
    r"(?P<link>with|to|into) (?P<b_art>the |a |an )?(?P<b>.+)$"
)

ADD = re.compile(r"^(add|put|insert|place) (?:(?:a|an|the|some) )?(?P<what>.+)$")
REMOVE = re.compile(
    r"^(remove|delete|erase|take away|get rid of) (?:(?:a|an|the|all|some) )?(?P<what>.+)$"
)
# Where the added thing goes, swapped with where the removed thing comes from.
PLACE_PREPOSITIONS = {" to the ": " from the ", " from the ": " to the "}
HEAD_NOUN_END = re.compile(r" (to|from|in|on|at|behind|around|near|of|under|over|into) ")

# Multi-word units first: the regex alternation tries them before single words.
UNIT_SWAPS = {
    "zoom in on": "zoom out from",
    "zoom out from": "zoom in on",
    "zoom in": "zoom out",
    "zoom out": "zoom in",
    "turn on": "turn off",
    "turn off": "turn on",
    "cool blue": "warm orange",
    "warm orange": "cool blue",
}
WORD_SWAPS = {
    "brighter": "darker",
    "darker": "brighter",
    "lighter": "darker",
    "brighten": "darken",
    "darken": "brighten",
    "warmer": "cooler",
    "cooler": "warmer",
    "warm": "cool",
    "cool": "warm",
    "increase": "decrease",
    "decrease": "increase",
    "reduce": "increase",
    "bigger": "smaller",
    "smaller": "bigger",
    "larger": "smaller",
    "blur": "sharpen",
    "sharpen": "blur",
    "blurry": "sharp",
    "sharp": "blurry",
    "blurrier": "sharper",
    "sharper": "blurrier",
    "saturate": "desaturate",
    "desaturate": "saturate",
    "day": "night",
    "night": "day",
    "daytime": "nighttime",
    "nighttime": "daytime",
    "older": "younger",
    "younger": "older",
    "moodier": "less moody",
    "clockwise": "counterclockwise",
    "counterclockwise": "clockwise",
    "anticlockwise": "clockwise",
}
COMPARATIVE_SWAPS = {"more": "less", "less": "more"}

# Longest first, so "zoom in on" wins over "zoom in".
_UNIT_PATTERN = "|".join(re.escape(unit) for unit in sorted(UNIT_SWAPS, key=len, reverse=True))
_WORD_PATTERN = "|".join(re.escape(word) for word in WORD_SWAPS)
DIRECTION = re.compile(
    rf"\b(?P<unit>{_UNIT_PATTERN})\b"
    rf"|\b(?P<comparative>more|less) (?P<adjective>\w+)"
    rf"|\b(?P<word>{_WORD_PATTERN})\b"
)


def normalise(text: str) -> str:
    return " ".join(text.lower().strip().rstrip(".!").split())


def invert_instruction(text: str) -> str | None:
    """The instruction that undoes `text`, or None when the edit cannot be undone."""
    instruction = normalise(text)
    if not instruction or NON_INVERTIBLE.search(instruction):
        return None
    if SELF_INVERSE.match(instruction):
        return instruction
    for invert in (_invert_object_swap, _invert_add, _invert_remove, _invert_directions):
        inverse = invert(instruction)
        if inverse is not None:
            return inverse
    return None


def _invert_object_swap(instruction: str) -> str | None:
    match = OBJECT_SWAP.match(instruction)
    if match is None or match["a_art"] is None:
        return None  # "replace it with ...": nothing to name in the reverse
    if match["verb"] in {"change", "turn"} and match["b_art"] is None:
        return None  # "change the colour to red": a setting, not one thing for another
    # The new object is in the picture now ("the"); the old one comes back ("a").
    old, new = match["a"], match["b"]
    return f"{match['verb']} the {new} {match['link']} {_article_for(old)}{old}"


def _invert_add(instruction: str) -> str | None:
    match = ADD.match(instruction)
    if match is None:
        return None
    return f"remove the {_swap_place(match['what'])}"


def _invert_remove(instruction: str) -> str | None:
    match = REMOVE.match(instruction)
    if match is None:
        return None
    what = _swap_place(match["what"])
    return f"add {_article_for(what)}{what}"


def _swap_place(phrase: str) -> str:
    for before, after in PLACE_PREPOSITIONS.items():
        if before in phrase:
            return phrase.replace(before, after, 1)
    return phrase


def _article_for(phrase: str) -> str:
    """'a '/'an ' for a singular head noun, '' for plurals and lists ("noise and grain")."""
    head = HEAD_NOUN_END.split(f"{phrase} ", maxsplit=1)[0].split()
    if not head or " and " in phrase or head[-1].endswith("s"):
        return ""
    return "an " if head[0][0] in "aeiou" else "a "


def _invert_directions(instruction: str) -> str | None:
    swapped = DIRECTION.sub(_swap_direction, instruction)
    return swapped if swapped != instruction else None


def _swap_direction(match: re.Match[str]) -> str:
    if match["unit"]:
        return UNIT_SWAPS[match["unit"]]
    if match["comparative"]:
        # The adjective stays: "more vivid" → "less vivid", not "less dull".
        return f"{COMPARATIVE_SWAPS[match['comparative']]} {match['adjective']}"
    return WORD_SWAPS[match["word"]]


def reverse_example(example: EditExample, inverse: str) -> EditExample:
    """The edit undone: edited → source under the inverse instruction.

    Reward and aspect scores are copied from the forward pair (HIVE assumes the reverse
    edit is as good as the forward one); the failure note described the forward edit, so
    it is dropped.
    """
    return dataclasses.replace(
        example, source=example.edited, edited=example.source, instruction=inverse, note=""
    )


def augment_with_cycles(
    examples: Sequence[EditExample],
) -> tuple[list[EditExample], float]:
    """`examples` followed by the reverse of each invertible one, and the invertible share."""
    reverses = []
    for example in examples:
        inverse = invert_instruction(example.instruction)
        if inverse is not None:
            reverses.append(reverse_example(example, inverse))
    share = len(reverses) / len(examples) if examples else 0.0
    return [*examples, *reverses], share
