"""A tiny random-init InstructPix2Pix editor with an offline CLIP tokenizer, for tests and CI.

Nothing here downloads anything. The tokenizer is a real byte-level CLIP BPE whose merges
are learned in code from the words the demo instructions, the HIVE quality suffix and the
cycle inverses use, so those words are one token each and any other text still tokenizes
(down to single bytes). The models are seeded random inits shaped like Stable Diffusion's,
only much smaller: an 8-channel UNet (4 noisy latents + 4 source latents, InstructPix2Pix
§3.2), a 2-level VAE (latents at half the pixel size) and a 2-layer CLIP text encoder.
"""

from __future__ import annotations

from collections import Counter
from functools import cache

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from training.pix2pix import EditorParts

TINY_MAX_TOKENS = 32  # tokenizer model_max_length = text encoder positions
TINY_TEXT_HIDDEN = 32
TINY_RESOLUTION = 32
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"

# Words beyond the demo instructions: the HIVE quality suffix, the cycle inverses and
# common edit vocabulary, so typical instructions map to whole-word tokens.
EXTRA_WORDS = """
image quality is one two three four five out of
add remove the a an make it darker brighter cooler warmer less more moody decrease increase
blur sharpen zoom from to back noise and grain day night smaller bigger replace with turn into
flip invert rotate clockwise counterclockwise degrees saturated desaturate saturate vivid muted
photo picture background foreground sky water sea grass tree trees person man woman face hair
eyes dog cat car house building street light lights shadow shadows sun snow rain winter summer
color colour colors colours red green blue yellow orange purple pink white black gray grey brown
golden bright dark warm cool old new small big large style very much bit slightly please
""".split()


def _demo_instruction_words() -> list[str]:
    from training.cycle import invert_instruction
    from training.procedural import DEMO_PHOTOS, RECIPES

    words: set[str] = set()
    for recipe in RECIPES:
        for photo in DEMO_PHOTOS:
            if recipe.fits(photo):
                text = recipe.instruction_for(photo)
                words.update(text.split())
                words.update((invert_instruction(text) or "").split())
    return sorted(words)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable character map (byte-level BPE alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def _learn_bpe(words: list[str]) -> list[tuple[str, str]]:
    """Plain BPE training: merge the most frequent adjacent pair until every word is one
    symbol. Ties break on the pair itself, so the merges are the same on every machine."""
    byte_chars = _bytes_to_unicode()
    split_words = []
    for word in words:
        symbols = [byte_chars[b] for b in word.encode()]
        symbols[-1] += END_OF_WORD
        split_words.append(symbols)
    merges: list[tuple[str, str]] = []
    while True:
        pairs = Counter(
            pair for symbols in split_words for pair in zip(symbols, symbols[1:], strict=False)
        )
        if not pairs:
            return merges
        best = max(pairs, key=lambda pair: (pairs[pair], pair))
        merges.append(best)
        split_words = [_merge_pair(symbols, best) for symbols in split_words]


def _merge_pair(symbols: list[str], pair: tuple[str, str]) -> list[str]:
    merged, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            merged.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return merged


@cache
def tiny_vocab_and_merges() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    words = sorted(set(_demo_instruction_words()) | set(EXTRA_WORDS) | {",", "."})
    merges = _learn_bpe(words)
    byte_chars = list(_bytes_to_unicode().values())
    # Like CLIP's vocab: every byte alone and word-final, then one token per merge.
    tokens = [*byte_chars, *(c + END_OF_WORD for c in byte_chars)]
    tokens += ["".join(pair) for pair in merges]
    tokens += [BOS, EOS]
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return vocab, tuple(merges)


def build_tiny_tokenizer() -> CLIPTokenizer:
    vocab, merges = tiny_vocab_and_merges()
    # transformers 5 takes the vocab dict and the merges as a list of pairs directly.
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=TINY_MAX_TOKENS)


def tiny_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TINY_TEXT_HIDDEN,
        intermediate_size=2 * TINY_TEXT_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=TINY_MAX_TOKENS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def tiny_unet(in_channels: int = 8) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=TINY_RESOLUTION // 2,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TINY_TEXT_HIDDEN,
        attention_head_dim=8,
        norm_num_groups=16,
    )


# A trained VAE's posterior is nearly a point (SD's σ is tiny next to its means); a random
# one has σ ≈ 1, which would bury the image under sampling noise in every target latent.
TINY_LOGVAR = -12.0


def tiny_vae() -> AutoencoderKL:
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=TINY_RESOLUTION,
    )
    logvar = vae.quant_conv.weight.shape[0] // 2  # moments are [mean, logvar] channels
    with torch.no_grad():
        vae.quant_conv.weight[logvar:] = 0.0
        vae.quant_conv.bias[logvar:] = TINY_LOGVAR
    return vae


def sd_noise_scheduler() -> DDPMScheduler:
    # Stable Diffusion's training schedule (InstructPix2Pix fine-tunes with it).
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        clip_sample=False,
    )


def build_tiny_editor(seed: int = 0) -> EditorParts:
    """A seeded random-init editor: same seed, bit-identical weights."""
    tokenizer = build_tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = tiny_unet()
        vae = tiny_vae()
        text_encoder = tiny_text_encoder(tokenizer)
    return EditorParts(
        unet=unet,
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        noise_scheduler=sd_noise_scheduler(),
        is_random_init=True,
    )
