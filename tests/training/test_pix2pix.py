"""The tiny editor, loading a diffusers directory, and the saved pipeline in stock diffusers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionInstructPix2PixPipeline
from PIL import Image

from training.objectives import quality_suffix
from training.pix2pix import (
    encode_source_latents,
    encode_target_latents,
    load_editor_parts,
    save_pipeline,
)
from training.procedural import DEMO_PHOTOS, RECIPES
from training.tiny import build_tiny_editor, build_tiny_tokenizer, tiny_unet


def photo(size: tuple[int, int] = (48, 40), seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
    return Image.fromarray(pixels)


def test_demo_instructions_and_the_quality_suffix_are_whole_word_tokens() -> None:
    tokenizer = build_tiny_tokenizer()
    texts = [recipe.instruction_for(DEMO_PHOTOS[2]) for recipe in RECIPES]
    texts += ["make it darker" + quality_suffix(level) for level in range(1, 6)]
    for text in texts:
        tokens = tokenizer.convert_ids_to_tokens(tokenizer(text).input_ids)[1:-1]
        words = text.replace(",", " ,").split()
        assert tokens == [f"{word}</w>" for word in words], text


def test_unknown_text_still_tokenizes_byte_by_byte() -> None:
    tokenizer = build_tiny_tokenizer()
    ids = tokenizer("zygote éclair").input_ids
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "zygote éclair"


def test_the_tiny_editor_is_the_same_for_a_seed_and_differs_across_seeds() -> None:
    first, again, other = build_tiny_editor(0), build_tiny_editor(0), build_tiny_editor(1)
    weights = first.unet.conv_in.weight
    assert torch.equal(weights, again.unet.conv_in.weight)
    assert not torch.equal(weights, other.unet.conv_in.weight)
    assert first.unet.config.in_channels == 8 and first.is_random_init


def test_source_latents_are_the_vae_mode_and_target_latents_are_sampled() -> None:
    parts = build_tiny_editor()
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(encode_source_latents(parts, pixels), encode_source_latents(parts, pixels))
    assert not torch.equal(
        encode_target_latents(parts, pixels), encode_target_latents(parts, pixels)
    )
    assert encode_source_latents(parts, pixels).shape == (2, 4, 16, 16)


def test_the_saved_pipeline_loads_in_stock_diffusers_and_edits_an_image(tmp_path: Path) -> None:
    # given the tiny editor saved as a pipeline directory
    save_pipeline(build_tiny_editor(), tmp_path / "pipeline")

    # when stock diffusers loads it and edits a photo
    pipeline = StableDiffusionInstructPix2PixPipeline.from_pretrained(tmp_path / "pipeline")
    pipeline.set_progress_bar_config(disable=True)
    result = pipeline(
        "make it brighter",
        image=photo((48, 40)),
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
    ).images[0]

    # then
    assert isinstance(result, Image.Image)
    assert result.size == (48, 40)
    assert pipeline.safety_checker is None


def test_load_editor_parts_reads_a_saved_pipeline_back(tmp_path: Path) -> None:
    original = build_tiny_editor(seed=3)
    save_pipeline(original, tmp_path)

    loaded = load_editor_parts(str(tmp_path))

    for name, tensor in original.unet.state_dict().items():
        assert torch.equal(tensor, loaded.unet.state_dict()[name]), name
    text = "make it brighter"
    assert loaded.tokenizer(text).input_ids == original.tokenizer(text).input_ids
    assert loaded.noise_scheduler.config.prediction_type == "epsilon"


def test_a_text_to_image_unet_gets_zero_initialised_source_channels(tmp_path: Path) -> None:
    # given a Stable-Diffusion-like directory whose UNet takes 4 channels
    parts = build_tiny_editor()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        text_to_image = tiny_unet(in_channels=4)
    save_pipeline(parts, tmp_path, unet=text_to_image)

    # when it is loaded as an editor
    widened = load_editor_parts(str(tmp_path)).unet

    # then the source channels start at zero: the output ignores them
    assert widened.conv_in.in_channels == 8 and widened.config.in_channels == 8
    assert torch.count_nonzero(widened.conv_in.weight[:, 4:]) == 0
    noisy, source = torch.randn(1, 4, 16, 16), torch.randn(1, 4, 16, 16)
    text = torch.randn(1, 32, 32)
    with torch.no_grad():
        expected = text_to_image(noisy, 10, encoder_hidden_states=text).sample
        actual = widened(torch.cat([noisy, source], 1), 10, encoder_hidden_states=text).sample
    assert torch.allclose(actual, expected, atol=1e-5)


def test_load_editor_parts_names_the_base_it_cannot_use(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="base"):
        load_editor_parts(str(tmp_path / "nowhere"))
