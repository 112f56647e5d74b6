"""ImageReward's released checkpoint as a warm start for the reward model.

ImageReward (Xu et al. 2023; THUDM/ImageReward, ImageReward/ImageReward.py) is BLIP with a
ViT-L/16 at 224 px (`blip.visual_encoder.*`, timm-style names, ImageReward/models/BLIP/
vit.py), a BERT text encoder with cross-attention (`blip.text_encoder.*`, models/BLIP/
med.py, configured by med_config.json) and an MLP on the [CLS] state (`mlp.layers.*`),
whose output is normalised with fixed constants: score = (mlp(cls) - mean) / std.

The released `ImageReward.pt` is that model's state dict. Here its keys are renamed onto
transformers' BlipVisionModel / BlipTextModel (the layout every other base has), the
architecture is read from the tensor shapes (rewards/bases.py, `imagereward_layout`), and
the MLP's weights and the normalisation are handed to the reward model's overall head
(`overall_head="imagereward"`, `score_mean` / `score_std` in RewardModelConfig).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import BertTokenizer, BlipConfig, BlipForImageTextRetrieval

from rewards.bases import (
    IMAGEREWARD_MLP_INDICES,
    IMAGEREWARD_WEIGHTS,
    MED_CONFIG,
    BaseInvalid,
    imagereward_layout,
    inspect_base,
    read_json,
    torch_file_shapes,
)
from rewards.tiny import BlipParts, build_image_processor

# ImageReward/ImageReward.py, class ImageReward: `self.mean`, `self.std` (not in the state dict).
IMAGEREWARD_MEAN = 0.16717362830052426
IMAGEREWARD_STD = 1.0333394966054072
# timm's ViT uses LayerNorm(eps=1e-6) (ImageReward/models/BLIP/vit.py), not Blip's 1e-5.
VIT_LAYER_NORM_EPS = 1e-6
# ViT-B and ViT-L both use 64-wide attention heads (12 x 64, 16 x 64; models/BLIP/blip.py
# create_vit); the head count is not in the state dict, so it follows from the width.
VIT_HEAD_WIDTH = 64

# timm ViT name -> transformers BlipVisionModel name (the fused qkv keeps its q, k, v order:
# both reshape it as (3, heads, head_dim), ImageReward's Attention and BlipAttention alike).
_VISION_RENAMES = (
    (r"^cls_token$", "embeddings.class_embedding"),
    (r"^pos_embed$", "embeddings.position_embedding"),
    (r"^patch_embed\.proj\.", "embeddings.patch_embedding."),
    (r"^blocks\.(\d+)\.norm1\.", r"encoder.layers.\1.layer_norm1."),
    (r"^blocks\.(\d+)\.norm2\.", r"encoder.layers.\1.layer_norm2."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"encoder.layers.\1.self_attn.qkv."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.self_attn.projection."),
    (r"^blocks\.(\d+)\.mlp\.", r"encoder.layers.\1.mlp."),
    (r"^norm\.", "post_layernorm."),
)
VISION_PREFIX = "blip.visual_encoder."
TEXT_CONFIG_KEYS = (
    "vocab_size", "hidden_size", "encoder_hidden_size", "intermediate_size", "num_hidden_layers",
    "max_position_embeddings", "num_attention_heads", "layer_norm_eps",
)  # fmt: skip
TEXT_PREFIX = "blip.text_encoder."


@dataclass
class ImageRewardStart:
    """What ImageReward.pt gives the reward model: the BLIP parts, the MLP head's weights
    (keys of an `imagereward` overall head) and its widths and score normalisation."""

    parts: BlipParts
    head_state: dict[str, torch.Tensor]
    head_widths: list[int]
    score_mean: float = IMAGEREWARD_MEAN
    score_std: float = IMAGEREWARD_STD


def load_imagereward(path: str | Path) -> ImageRewardStart:
    """Check (rewards.bases) and load an ImageReward directory: ImageReward.pt,
    med_config.json and bert-base-uncased's vocab.txt."""
    info = inspect_base(path)
    if info.kind != "imagereward":
        raise BaseInvalid(f"{path} is a {info.kind} base, not ImageReward's checkpoint")
    directory = Path(info.path)
    weights = directory / IMAGEREWARD_WEIGHTS
    med = read_json(directory / MED_CONFIG, missing=f"{directory} has no {MED_CONFIG}")
    layout = imagereward_layout(weights, torch_file_shapes(weights), med)
    # weights_only: the file was checked by an inert unpickler, and loads without running code.
    state = torch.load(weights, map_location="cpu", weights_only=True)
    tokenizer = imagereward_tokenizer(directory, layout["text"])
    model = BlipForImageTextRetrieval(blip_config(layout, tokenizer))
    model.vision_model.load_state_dict(vision_state(state))
    model.text_encoder.load_state_dict(text_state(state))
    image_processor = build_image_processor(layout["vision"]["image_size"])
    return ImageRewardStart(
        parts=BlipParts(model.eval(), tokenizer, image_processor),
        head_state=head_state(state),
        head_widths=list(layout["head"]),
    )


def vision_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ImageReward's `blip.visual_encoder.*` under BlipVisionModel's names."""
    renamed = {}
    for key, tensor in state.items():
        if key.startswith(VISION_PREFIX):
            renamed[_rename_vision(key.removeprefix(VISION_PREFIX))] = tensor
    return renamed


def _rename_vision(name: str) -> str:
    for pattern, replacement in _VISION_RENAMES:
        if re.match(pattern, name):
            return re.sub(pattern, replacement, name)
    raise BaseInvalid(f"{VISION_PREFIX}{name} has no BlipVisionModel counterpart")


def text_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ImageReward's `blip.text_encoder.*`: med.py's BERT names are BlipTextModel's; only the
    `position_ids` buffer (saved by med.py, not persistent in transformers) is dropped."""
    return {
        key.removeprefix(TEXT_PREFIX): tensor
        for key, tensor in state.items()
        if key.startswith(TEXT_PREFIX) and not key.endswith("position_ids")
    }


def head_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`mlp.layers.<i>.*` as the keys of an `imagereward` overall head, which repeats the
    MLP's nn.Sequential indices (Linear at 0, 2, 4, 6, 7; Dropout between)."""
    return {
        f"{index}.{param}": state[f"mlp.layers.{index}.{param}"]
        for index in IMAGEREWARD_MLP_INDICES
        for param in ("weight", "bias")
    }


def imagereward_tokenizer(directory: Path, text: dict[str, Any]) -> BertTokenizer:
    """bert-base-uncased's tokenizer with BLIP's two added tokens ([DEC] as bos, [ENC]),
    as ImageReward/models/BLIP/blip.py init_tokenizer builds it: 30522 + 2 = the 30524
    rows of the text encoder's word embeddings."""
    # transformers 5 ignores `vocab_file=`; `vocab=` is the argument that takes effect.
    tokenizer = BertTokenizer(
        vocab=str(directory / "vocab.txt"),
        do_lower_case=True,
        model_max_length=int(text["max_position_embeddings"]),
    )
    if len(tokenizer) + 2 <= int(text["vocab_size"]):
        tokenizer.add_special_tokens({"bos_token": "[DEC]"})
        tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


def blip_config(layout: dict[str, Any], tokenizer: BertTokenizer) -> BlipConfig:
    vision, text = layout["vision"], layout["text"]
    return BlipConfig(
        vision_config={
            **{k: vision[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers")},
            "image_size": vision["image_size"],
            "patch_size": vision["patch_size"],
            "num_attention_heads": max(1, vision["hidden_size"] // VIT_HEAD_WIDTH),
            "layer_norm_eps": VIT_LAYER_NORM_EPS,
        },
        text_config={
            **{k: text[k] for k in TEXT_CONFIG_KEYS},
            "pad_token_id": tokenizer.pad_token_id,
            "sep_token_id": tokenizer.sep_token_id,
            "bos_token_id": tokenizer.bos_token_id or tokenizer.cls_token_id,
        },
    )
