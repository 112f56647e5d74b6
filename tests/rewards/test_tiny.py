"""The offline tiny BLIP: vocabulary, tokenizer, checkpoint layout."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from rewards.tiny import build_tiny_blip, build_tiny_tokenizer, save_tiny_blip
from training.procedural import DEMO_PHOTOS, RECIPES


def test_every_procedural_instruction_tokenizes_without_unknown_words() -> None:
    tokenizer = build_tiny_tokenizer()
    unknown = tokenizer.unk_token_id
    for recipe in RECIPES:
        for photo in DEMO_PHOTOS:
            if recipe.fits(photo):
                ids = tokenizer(recipe.instruction_for(photo))["input_ids"]
                assert unknown not in ids, recipe.instruction_for(photo)


def test_other_text_falls_back_to_characters_not_unknown() -> None:
    tokenizer = build_tiny_tokenizer()
    tokens = tokenizer.tokenize("make the zebra purple!")
    assert "[UNK]" not in tokens
    assert tokens[:2] == ["make", "the"] and "purple" in tokens


def test_the_same_seed_gives_the_same_weights() -> None:
    a, b = build_tiny_blip(3).model.state_dict(), build_tiny_blip(3).model.state_dict()
    assert all(bool((a[k] == b[k]).all()) for k in a)


def test_it_saves_a_blip_checkpoint_layout(tmp_path: Path) -> None:
    directory = save_tiny_blip(tmp_path / "blip")
    names = {path.name for path in directory.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= names
    assert "vocab.txt" in names or "tokenizer.json" in names
    reloaded = AutoTokenizer.from_pretrained(directory)
    assert reloaded.tokenize("make it brighter") == ["make", "it", "brighter"]
