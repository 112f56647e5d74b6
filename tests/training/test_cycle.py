from __future__ import annotations

from pathlib import Path

import pytest

from training.cycle import augment_with_cycles, invert_instruction
from training.procedural import DEMO_PHOTOS, RECIPES
from training.records import EditExample

INVERTIBLE = [
    ("make it brighter", "make it darker"),
    ("Make it brighter.", "make it darker"),
    ("make it brighter and less saturated", "make it darker and more saturated"),
    ("make the colours more vivid", "make the colours less vivid"),
    ("make the colours warmer", "make the colours cooler"),
    ("give the photo a cool blue tone", "give the photo a warm orange tone"),
    ("increase the contrast", "decrease the contrast"),
    ("reduce the contrast", "increase the contrast"),
    ("zoom in on the cat", "zoom out from the cat"),
    ("zoom out", "zoom in"),
    ("sharpen the details", "blur the details"),
    ("blur the background behind the cat", "sharpen the background behind the cat"),
    ("darken the background around the rocket", "brighten the background around the rocket"),
    ("make the photo darker and moodier", "make the photo brighter and less moody"),
    ("add a dog", "remove the dog"),
    ("add an umbrella to the beach", "remove the umbrella from the beach"),
    ("add a vignette", "remove the vignette"),
    ("add a film grain texture", "remove the film grain texture"),
    ("remove the dog from the photo", "add a dog to the photo"),
    ("remove the noise and grain", "add noise and grain"),
    ("remove the glasses", "add glasses"),
    ("remove the apple", "add an apple"),
    ("replace the dog with a cat", "replace the cat with a dog"),
    ("turn the dog into a tiger", "turn the tiger into a dog"),
    ("make it night", "make it day"),
    ("rotate it 90 degrees clockwise", "rotate it 90 degrees counterclockwise"),
    ("flip it horizontally", "flip it horizontally"),
    ("invert the colours", "invert the colours"),
]

NOT_INVERTIBLE = [
    "make it black and white",
    "turn the photo black and white",
    "convert it to grayscale",
    "give it an old sepia look",
    "make it look like a pencil sketch",
    "posterize it into a few flat colours",
    "crop to the centre",
    "remove the background behind the cat",
    "remove the colour from everything except the cat",
    "make it a van gogh painting",
    "change the colour to red",
    "make it look nicer",
    "",
]


@pytest.mark.parametrize(("instruction", "inverse"), INVERTIBLE)
def test_it_inverts_an_invertible_instruction(instruction: str, inverse: str) -> None:
    assert invert_instruction(instruction) == inverse


@pytest.mark.parametrize("instruction", NOT_INVERTIBLE)
def test_it_refuses_an_instruction_that_cannot_be_undone(instruction: str) -> None:
    assert invert_instruction(instruction) is None


@pytest.mark.parametrize(
    "instruction",
    ["make it brighter", "add a dog", "make the colours more vivid", "zoom in on the cat"],
)
def test_inverting_twice_gives_the_instruction_back(instruction: str) -> None:
    inverse = invert_instruction(instruction)
    assert inverse is not None
    assert invert_instruction(inverse) == instruction


def test_augment_adds_a_swapped_reverse_pair_for_invertible_examples_only() -> None:
    # given one invertible and one non-invertible example
    brighter = EditExample(
        Path("a.png"),
        Path("a_edit.png"),
        "make it brighter",
        4.0,
        {"following": 4, "preserving": 5, "quality": 4},
        note="too weak",
    )
    grey = EditExample(Path("b.png"), Path("b_edit.png"), "make it black and white", 2.0)

    # when
    augmented, share = augment_with_cycles([brighter, grey])

    # then the reverse edit goes edited → source under the inverse instruction
    assert share == 0.5
    assert augmented[:2] == [brighter, grey]
    (reverse,) = augmented[2:]
    assert (reverse.source, reverse.edited) == (Path("a_edit.png"), Path("a.png"))
    assert reverse.instruction == "make it darker"
    assert (reverse.reward, reverse.aspects, reverse.note) == (4.0, brighter.aspects, "")


def test_augment_of_nothing_has_zero_share() -> None:
    assert augment_with_cycles([]) == ([], 0.0)


def test_a_good_share_of_the_demo_instructions_invert() -> None:
    # The demo data is mostly global colour/tone edits: most invert, styles do not.
    instructions = {
        recipe.instruction_for(photo)
        for recipe in RECIPES
        for photo in DEMO_PHOTOS
        if recipe.fits(photo)
    }
    inverses = {text: invert_instruction(text) for text in instructions}
    assert inverses["make it brighter"] == "make it darker"
    assert inverses["turn the photo black and white"] is None
    share = sum(v is not None for v in inverses.values()) / len(inverses)
    assert 0.3 < share < 0.9
