"""Editors: the procedural one, the tiny one, and pipelines written by train_editor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.generate import (
    DiffusersEditor,
    Editor,
    ProceduralEditor,
    TinyEditor,
    load_editor,
)
from training.procedural import OPERATIONS
from training.records import EditExample
from training.trainer import FinetuneConfig, train_editor


def smooth_photo(seed: int, size: tuple[int, int] = (48, 36)) -> Image.Image:
    coarse = np.random.default_rng(seed).integers(0, 256, (3, 4, 3), np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Pipelines from three short tiny runs: supervised, conditional and multi-reward."""
    folder = tmp_path_factory.mktemp("generate")
    examples = []
    for index, (instruction, operation) in enumerate(
        [("make it brighter", "brighten"), ("make it darker", "darken")]
    ):
        source, edited = folder / f"s{index}.png", folder / f"e{index}.png"
        smooth_photo(index).save(source)
        OPERATIONS[operation](smooth_photo(index), 1.0).save(edited)
        aspects = {"following": 4.0, "preserving": 3.0 + index, "quality": 5.0}
        examples.append(EditExample(source, edited, instruction, float(index), aspects))
    pipelines = {}
    for method in ("supervised", "conditional", "multireward"):
        config = FinetuneConfig(method=method, max_steps=3, batch_size=2, learning_rate=1e-3)
        pipelines[method] = train_editor(config, examples, "tiny", folder / method).pipeline_dir
    return pipelines


# --- procedural ---------------------------------------------------------------------------


def test_the_procedural_editor_is_deterministic_per_seed() -> None:
    editor = ProceduralEditor()
    photo = smooth_photo(0)
    first = editor.edit(photo, "make it brighter", seed=7)
    again = editor.edit(photo, "make it brighter", seed=7)
    other = editor.edit(photo, "make it brighter", seed=8)
    assert np.array_equal(pixels(first), pixels(again))
    assert not np.array_equal(pixels(first), pixels(other))
    # It really brightened: the good-strength range of "brighten".
    assert pixels(first).mean() > pixels(photo).mean() + 5


def test_the_procedural_editor_matches_subject_instructions_and_case() -> None:
    editor = ProceduralEditor()
    assert editor.recipe_for("Blur the background behind the dog.").operation.name == (
        "blur_background"
    )
    assert editor.recipe_for("ADD A VIGNETTE").operation.name == "vignette"


def test_the_procedural_editor_refuses_an_instruction_it_has_no_recipe_for() -> None:
    with pytest.raises(ValueError, match="^instruction: .*no recipe for 'make it a cartoon'"):
        ProceduralEditor().edit(smooth_photo(0), "make it a cartoon", seed=0)


def test_load_editor_knows_procedural_tiny_and_pipeline_folders(trained, tmp_path) -> None:
    procedural = load_editor("procedural")
    assert isinstance(procedural, ProceduralEditor) and isinstance(procedural, Editor)
    assert (procedural.name, procedural.version) == ("procedural", "procedural-1")
    assert isinstance(load_editor("tiny"), TinyEditor)
    assert isinstance(load_editor(str(trained["supervised"])), DiffusersEditor)
    with pytest.raises(ValueError, match="^editor: "):
        load_editor(str(tmp_path))


# --- diffusers ----------------------------------------------------------------------------------


def test_a_trained_pipeline_edits_to_the_source_size_deterministically(trained) -> None:
    editor = load_editor(str(trained["supervised"]))
    photo = smooth_photo(3, size=(50, 34))
    first = editor.edit(photo, "make it brighter", seed=1)
    again = editor.edit(photo, "make it brighter", seed=1)
    other = editor.edit(photo, "make it brighter", seed=2)
    assert isinstance(first, Image.Image) and first.size == (50, 34) and first.mode == "RGB"
    assert np.array_equal(pixels(first), pixels(again))
    assert not np.array_equal(pixels(first), pixels(other))


def test_the_editor_is_labelled_for_the_variant_rows(trained) -> None:
    editor = DiffusersEditor(trained["supervised"])
    assert editor.name == "instruct-pix2pix-supervised"
    assert editor.version.startswith("supervised/pipeline@") and len(editor.version) <= 100
    assert editor.resolution == 32  # the fine-tuning resolution, from editloop_finetune.json


def test_a_conditional_reward_pipeline_samples_with_five_out_of_five(trained) -> None:
    editor = DiffusersEditor(trained["conditional"], steps=2)
    assert editor.instruction_suffix == ", image quality is five out of five"
    plain = DiffusersEditor(trained["conditional"], steps=2)
    plain.instruction_suffix = ""
    photo, suffix = smooth_photo(0), editor.instruction_suffix

    edited = pixels(editor.edit(photo, "make it brighter", seed=0))

    assert np.array_equal(edited, pixels(plain.edit(photo, "make it brighter" + suffix, seed=0)))
    assert not np.array_equal(edited, pixels(plain.edit(photo, "make it brighter", seed=0)))


def test_a_multireward_pipeline_samples_at_five_five_five_by_default(trained) -> None:
    photo = smooth_photo(1)
    baked = DiffusersEditor(trained["multireward"], steps=2)
    explicit = DiffusersEditor(trained["multireward"], steps=2, reward_condition=(5.0, 5.0, 5.0))
    worst = DiffusersEditor(trained["multireward"], steps=2, reward_condition=(0.0, 0.0, 0.0))

    default_edit = pixels(baked.edit(photo, "make it brighter", seed=3))
    assert (
        np.abs(default_edit - pixels(explicit.edit(photo, "make it brighter", seed=3))).max() <= 1
    )
    assert not np.array_equal(default_edit, pixels(worst.edit(photo, "make it brighter", seed=3)))
    assert worst.version.endswith("+r0.0,0.0,0.0")


def test_reward_scores_are_refused_for_other_pipelines(trained) -> None:
    with pytest.raises(ValueError, match="^reward_condition: "):
        DiffusersEditor(trained["supervised"], reward_condition=(5.0, 5.0, 5.0))


def test_the_tiny_editor_edits_without_any_files() -> None:
    editor = TinyEditor(seed=0, steps=2)
    result = editor.edit(smooth_photo(0), "make it brighter", seed=0)
    assert result.size == (48, 36)
    assert editor.version == "tiny-random-init-seed0"


# --- a plain Stable Diffusion base --------------------------------------------------------


def test_a_plain_stable_diffusion_directory_edits_as_its_widened_editor(tmp_path: Path) -> None:
    # given a directory in the stock StableDiffusionPipeline layout (4-channel UNet)
    import torch
    from diffusers import StableDiffusionPipeline

    from training.tiny import build_tiny_editor, tiny_unet

    parts = build_tiny_editor()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = tiny_unet(in_channels=4)
    StableDiffusionPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=unet,
        scheduler=parts.noise_scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(tmp_path)  # fmt: skip

    # when it is loaded as an editor and asked for an edit
    editor = load_editor(str(tmp_path), steps=2, resolution=32)
    photo = smooth_photo(0)
    edited = editor.edit(photo, "make it brighter", seed=0)

    # then it samples through the widened UNet and says so
    assert edited.size == photo.size
    assert editor.pipeline.unet.config.in_channels == 8
    assert "widened to 8 input channels" in editor.description
    fresh = load_editor(str(tmp_path), steps=2, resolution=32)
    again = fresh.edit(photo, "make it brighter", seed=0)
    assert np.array_equal(pixels(edited), pixels(again))
