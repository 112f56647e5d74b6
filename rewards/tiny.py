"""A tiny random-init BLIP with an offline tokenizer, for tests, the demo and CI.

Nothing here downloads anything: the vocabulary is built in code from the words the
procedural editor's instructions use (plus single characters and `##` wordpieces so any
other text still tokenizes), and the weights are a seeded random init. `save_tiny_blip`
writes the same directory layout as a real `Salesforce/blip-itm-*` checkpoint, so tests
can load it through the exact code path a real checkpoint takes.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import BertTokenizer, BlipConfig, BlipForImageTextRetrieval
from transformers.models.blip import BlipImageProcessorPil

TINY_IMAGE_SIZE = 64
TINY_PATCH_SIZE = 8
TINY_HIDDEN = 96
TINY_LAYERS = 4
TINY_HEADS = 4
TINY_MAX_POSITIONS = 64

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# Words of common edit instructions beyond the procedural ones, so a demo user's own
# instruction mostly maps to whole words rather than characters.
EXTRA_WORDS = """
a an the and or of to in on at with without from into onto by for as is it its this that
make turn change replace remove add put give let more less very much bit slightly strongly
image photo picture background foreground sky water sea grass tree trees person man woman
face hair eyes dog cat car house building street light lights shadow shadows sun night day
color colour colors colours red green blue yellow orange purple pink white black gray grey
brown golden bright brighter dark darker warm warmer cool cooler old new small big large
style painting sketch cartoon watercolor oil van gogh snow rain winter summer autumn spring
""".split()


def _procedural_words() -> list[str]:
    # The demo data's instructions, with every subject filled in, so the demo never hits [UNK].
    from training.procedural import DEMO_PHOTOS, RECIPES

    words: set[str] = set()
    for recipe in RECIPES:
        for photo in DEMO_PHOTOS:
            if recipe.fits(photo):
                words.update(recipe.instruction_for(photo).lower().split())
    return sorted(words)


def tiny_vocab() -> dict[str, int]:
    """Special tokens, the instruction words, then characters and `##` characters."""
    tokens: list[str] = list(SPECIAL_TOKENS)
    characters = string.ascii_lowercase + string.digits + string.punctuation
    for token in [
        *_procedural_words(),
        *EXTRA_WORDS,
        *characters,
        *(f"##{c}" for c in characters),
    ]:
        if token not in tokens:
            tokens.append(token)
    return {token: index for index, token in enumerate(tokens)}


def build_tiny_tokenizer() -> BertTokenizer:
    # transformers 5 ignores `vocab_file=`; `vocab=` is the argument that takes effect.
    return BertTokenizer(
        vocab=tiny_vocab(), do_lower_case=True, model_max_length=TINY_MAX_POSITIONS
    )


def build_image_processor(image_size: int) -> BlipImageProcessorPil:
    """BLIP's preprocessing (bicubic resize, CLIP mean/std), PIL backend: no torchvision."""
    return BlipImageProcessorPil(size={"height": image_size, "width": image_size})


def tiny_blip_config(vocab_size: int, image_size: int = TINY_IMAGE_SIZE) -> BlipConfig:
    vision = {
        "hidden_size": TINY_HIDDEN,
        "intermediate_size": 2 * TINY_HIDDEN,
        "num_hidden_layers": TINY_LAYERS,
        "num_attention_heads": TINY_HEADS,
        "image_size": image_size,
        "patch_size": TINY_PATCH_SIZE,
        # BlipVisionConfig defaults to 1e-10 (real checkpoints overwrite it): a random ViT
        # initialised that way outputs a constant, so use BERT's 0.02 like the text side.
        "initializer_range": 0.02,
    }
    text = {
        "vocab_size": vocab_size,
        "hidden_size": TINY_HIDDEN,
        "intermediate_size": 2 * TINY_HIDDEN,
        "num_hidden_layers": TINY_LAYERS,
        "num_attention_heads": TINY_HEADS,
        "max_position_embeddings": TINY_MAX_POSITIONS,
        "encoder_hidden_size": TINY_HIDDEN,
        "pad_token_id": SPECIAL_TOKENS.index("[PAD]"),
        "sep_token_id": SPECIAL_TOKENS.index("[SEP]"),
        "bos_token_id": SPECIAL_TOKENS.index("[CLS]"),
    }
    return BlipConfig(
        vision_config=vision,
        text_config=text,
        projection_dim=TINY_HIDDEN,
        image_text_hidden_size=32,
    )


@dataclass
class BlipParts:
    """What a BLIP checkpoint directory provides: the model, its tokenizer and preprocessing."""

    model: BlipForImageTextRetrieval
    tokenizer: BertTokenizer
    image_processor: BlipImageProcessorPil


def build_tiny_blip(seed: int = 0, image_size: int = TINY_IMAGE_SIZE) -> BlipParts:
    """A seeded random-init BLIP: same seed, bit-identical weights (cache keys rely on it)."""
    tokenizer = build_tiny_tokenizer()
    config = tiny_blip_config(len(tokenizer), image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BlipForImageTextRetrieval(config)
    return BlipParts(model.eval(), tokenizer, build_image_processor(image_size))


def save_tiny_blip(directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny BLIP laid out as a real blip-itm checkpoint (model, tokenizer, processor)."""
    directory = Path(directory)
    parts = build_tiny_blip(seed)
    parts.model.save_pretrained(directory)
    parts.tokenizer.save_pretrained(directory)
    parts.image_processor.save_pretrained(directory)
    return directory
