"""Multi-reward condition: three 0–5 scores steer the UNet through its time embedding.

Multi-Reward as Condition §4.3: each score (following, preserving, quality) goes through a
sinusoidal position encoding, the three are concatenated and an MLP maps them to the reward
condition; §4.2 adds that condition inside the U-Net. We keep the "addition" half of that
design (Tab. 5, row 3: most of the gain on preserving and quality) and add the condition
to the time embedding, which every ResNet block of the U-Net receives. The reward-encoder
cross-attention and the failure-text embedding are not implemented.

How it maps onto a stock diffusers UNet (a decision, so saved UNets stay stock):

* `MultiRewardCondition` is the parameter-free part, scores (B, 3) → sinusoidal features
  (B, 3 · `features_per_score`).
* The MLP is the UNet's own `class_embedding` with `class_embed_type="projection"`:
  `UNet2DConditionModel` computes `emb = time_embedding(t) + class_embedding(class_labels)`,
  so passing the features as `class_labels` *is* "MLP, then add to the time embedding".
  `enable_multireward` installs it on any UNet (output layer zero-initialised, so a
  pretrained editor starts out unchanged) and records it in the UNet config, so
  `UNet2DConditionModel.from_pretrained` rebuilds it.

What inference needs: the paper samples with (5, 5, 5). Stock
`StableDiffusionInstructPix2PixPipeline` never passes `class_labels`, so
`bake_reward_condition` folds the constant `class_embedding(features(5, 5, 5))` into the
bias of the time embedding's last linear layer and drops the class embedding. The result
is exact (the sum happens before any non-linearity) and is a plain UNet, so the exported
pipeline needs nothing beyond stock diffusers. The trainer also saves the conditional UNet
(`pipeline/multireward_unet/`); `training.generate.DiffusersEditor(reward_condition=...)`
uses it to sample at any other scores.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.embeddings import TimestepEmbedding
from torch import nn

ASPECT_ORDER = ("following", "preserving", "quality")
MAX_SCORE = 5.0
BEST_SCORES = (5.0, 5.0, 5.0)  # Multi-Reward §6.4: sample with the highest scores
# Scores × 200 span 0–1000, the range timesteps cover, so the standard frequencies resolve
# a tenth of a point.
SCORE_SCALE = 200.0


class MultiRewardCondition(nn.Module):
    """Scores (B, 3) on 0–5 → concatenated sinusoidal encodings (B, 3 · features_per_score)."""

    def __init__(self, features_per_score: int = 32, max_period: float = 10_000.0) -> None:
        super().__init__()
        if features_per_score % 2:
            raise ValueError("features_per_score: must be even (sine and cosine halves)")
        self.features_per_score = features_per_score
        self.max_period = max_period

    @property
    def out_features(self) -> int:
        return len(ASPECT_ORDER) * self.features_per_score

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        if scores.ndim != 2 or scores.shape[1] != len(ASPECT_ORDER):
            raise ValueError(f"scores: expected shape (batch, 3), got {tuple(scores.shape)}")
        half = self.features_per_score // 2
        exponent = torch.arange(half, device=scores.device, dtype=torch.float32) / half
        frequencies = torch.exp(-math.log(self.max_period) * exponent)
        angles = scores.float()[:, :, None] * SCORE_SCALE * frequencies  # (B, 3, half)
        encoding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
        return encoding.flatten(1)


def aspect_scores(aspects: dict[str, float]) -> list[float]:
    """The three scores in ASPECT_ORDER, checked to be on 0–5."""
    missing = [name for name in ASPECT_ORDER if name not in aspects]
    if missing:
        raise ValueError(f"aspects: missing {missing}; need {list(ASPECT_ORDER)}")
    scores = [float(aspects[name]) for name in ASPECT_ORDER]
    if not all(0.0 <= score <= MAX_SCORE for score in scores):
        raise ValueError(f"aspects: scores must be within 0..5, got {scores}")
    return scores


def condition_features(
    condition: MultiRewardCondition, scores: Sequence[Sequence[float]], device: torch.device
) -> torch.Tensor:
    return condition(torch.tensor(scores, dtype=torch.float32, device=device))


def enable_multireward(
    unet: UNet2DConditionModel, condition: MultiRewardCondition
) -> UNet2DConditionModel:
    """Install the reward MLP as the UNet's projection class embedding (in place)."""
    if unet.class_embedding is not None:
        if unet.config.projection_class_embeddings_input_dim != condition.out_features:
            raise ValueError("unet: already has a class embedding of another size")
        return unet
    time_embed_dim = unet.time_embedding.linear_2.out_features
    mlp = TimestepEmbedding(condition.out_features, time_embed_dim)
    # Zero output layer: a pretrained editor behaves exactly as before at step 0.
    nn.init.zeros_(mlp.linear_2.weight)
    nn.init.zeros_(mlp.linear_2.bias)
    unet.class_embedding = mlp.to(unet.device, unet.dtype)
    unet.register_to_config(
        class_embed_type="projection", projection_class_embeddings_input_dim=condition.out_features
    )
    return unet


def condition_from_unet(unet: UNet2DConditionModel) -> MultiRewardCondition:
    """The encoding a multi-reward UNet was trained with, read back from its config."""
    width = unet.config.projection_class_embeddings_input_dim
    if unet.config.class_embed_type != "projection" or not width:
        raise ValueError("unet: not a multi-reward UNet (no projection class embedding)")
    return MultiRewardCondition(features_per_score=width // len(ASPECT_ORDER))


@torch.no_grad()
def bake_reward_condition(
    unet: UNet2DConditionModel, scores: Sequence[float] = BEST_SCORES
) -> UNet2DConditionModel:
    """A copy of `unet` that always behaves as if conditioned on `scores`, with no class
    embedding left: `time_embedding(t) + c` with constant c is the time embedding with c
    added to its last bias."""
    if unet.time_embedding.post_act is not None or unet.time_embedding.cond_proj is not None:
        raise ValueError("unet: time embedding is not a plain MLP; cannot bake the condition")
    condition = condition_from_unet(unet)
    baked = copy.deepcopy(unet)
    parameter = next(baked.class_embedding.parameters())
    features = condition_features(condition, [list(scores)], parameter.device)
    constant = baked.class_embedding(features.to(parameter.dtype))[0]
    baked.time_embedding.linear_2.bias += constant
    baked.class_embedding = None
    baked.register_to_config(class_embed_type=None, projection_class_embeddings_input_dim=None)
    return baked
