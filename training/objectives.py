"""Fine-tuning objectives for an InstructPix2Pix editor, one small function each.

Every objective takes the editor parts, the UNet being trained and a batch, and returns
`(loss, extras)`: a scalar tensor to backpropagate and a dict of floats to log. All of
them share the InstructPix2Pix denoising step (§3.2): encode the edited image to latents,
add noise at a random timestep, concatenate the source image's latents, predict the noise
under the instruction's text embedding and compare. Conditioning dropout (§3.2.1) applies
in every objective so the trained editor keeps classifier-free guidance on both inputs.

Randomness (noise, timesteps, dropout, VAE samples) comes from torch's global generator,
which the trainer seeds and stores in its checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

from training.config import ConditioningDropout
from training.multireward import MultiRewardCondition
from training.pix2pix import (
    EditorParts,
    encode_source_latents,
    encode_target_latents,
    encode_text,
)

Extras = dict[str, float]
QUALITY_WORDS = ("one", "two", "three", "four", "five")
QUALITY_LEVELS = len(QUALITY_WORDS)
BEST_QUALITY = QUALITY_LEVELS  # HIVE conditional reward: sample with "five out of five"


DEFAULT_DROPOUT = ConditioningDropout()
NO_DROPOUT = ConditioningDropout(0.0, 0.0, 0.0)


@dataclass
class EditBatch:
    source: torch.Tensor  # (B, 3, H, W) in [-1, 1]
    edited: torch.Tensor  # (B, 3, H, W) in [-1, 1]
    instructions: list[str]
    rewards: torch.Tensor | None = None  # (B,) scalar rewards
    aspects: torch.Tensor | None = None  # (B, 3) following, preserving, quality on 0..5
    quality_levels: list[int] | None = None  # 1..5 per example, for the conditional reward


@dataclass
class PreferenceBatch:
    source: torch.Tensor
    chosen: torch.Tensor
    rejected: torch.Tensor
    instructions: list[str]
    weights: torch.Tensor  # (B,)


# --- the shared denoising step ---------------------------------------------------------


def apply_conditioning_dropout(
    text: torch.Tensor,
    source_latents: torch.Tensor,
    null_text: torch.Tensor,
    dropout: ConditioningDropout,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace the text by the empty prompt's embedding and/or zero the source latents.

    InstructPix2Pix §3.2.1: one uniform draw per example picks text only, both or image
    only, so the three cases never overlap. Sampling uses the same stand-ins ("" and zero
    latents) for the unconditional passes of classifier-free guidance.
    """
    draw = torch.rand(text.shape[0], device=text.device)
    drop_text = draw < dropout.text_only + dropout.both
    drop_image = (draw >= dropout.text_only) & (
        draw < dropout.text_only + dropout.both + dropout.image_only
    )
    text = torch.where(drop_text[:, None, None], null_text.to(text.dtype), text)
    keep_image = (~drop_image).to(source_latents.dtype)[:, None, None, None]
    return text, source_latents * keep_image


def prediction_target(
    parts: EditorParts, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    prediction_type = parts.noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return parts.noise_scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"noise_scheduler: prediction_type {prediction_type!r} is not supported")


def per_sample_errors(
    parts: EditorParts,
    unet: UNet2DConditionModel,
    latents: torch.Tensor,
    source_latents: torch.Tensor,
    text: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    class_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error of the UNet's prediction per example, shape (B,)."""
    noisy = parts.noise_scheduler.add_noise(latents, noise, timesteps)
    # InstructPix2Pix §3.2: the source latents ride along as 4 extra input channels.
    model_input = torch.cat([noisy, source_latents.to(noisy.dtype)], dim=1)
    prediction = unet(
        model_input, timesteps, encoder_hidden_states=text, class_labels=class_labels
    ).sample
    target = prediction_target(parts, latents, noise, timesteps)
    return F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))


def random_timesteps(parts: EditorParts, count: int, device: torch.device) -> torch.Tensor:
    steps = parts.noise_scheduler.config.num_train_timesteps
    return torch.randint(0, steps, (count,), device=device, dtype=torch.long)


def null_text_embedding(parts: EditorParts) -> torch.Tensor:
    return encode_text(parts, [""])


def denoising_errors(
    parts: EditorParts,
    unet: UNet2DConditionModel,
    batch: EditBatch,
    dropout: ConditioningDropout,
    instructions: list[str] | None = None,
    class_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Encode the batch, drop conditioning, noise, predict: per-example MSE (B,)."""
    latents = encode_target_latents(parts, batch.edited)
    source_latents = encode_source_latents(parts, batch.source)
    text = encode_text(parts, instructions or batch.instructions)
    text, source_latents = apply_conditioning_dropout(
        text, source_latents, null_text_embedding(parts), dropout
    )
    noise = torch.randn_like(latents)
    timesteps = random_timesteps(parts, latents.shape[0], latents.device)
    return per_sample_errors(
        parts, unet, latents, source_latents, text, noise, timesteps, class_labels
    )


# --- objectives ---------------------------------------------------------------------------


def supervised_loss(
    parts: EditorParts,
    unet: UNet2DConditionModel,
    batch: EditBatch,
    dropout: ConditioningDropout = DEFAULT_DROPOUT,
) -> tuple[torch.Tensor, Extras]:
    """The InstructPix2Pix loss: every (source, edited) pair counts the same."""
    loss = denoising_errors(parts, unet, batch, dropout).mean()
    return loss, {"mse": loss.item()}


def reward_weights(rewards: torch.Tensor, eta: float, weight_clip: float) -> torch.Tensor:
    """HIVE weighted reward: w ∝ exp(r / η), normalised to mean 1 in the batch, then clipped.

    The offline-RL target p*(x) ∝ p(x) exp(r(x) / η) turns into a per-example weight on
    the denoising loss; the softmax form is exp(r / η) without overflow, and the clip keeps
    one very good example from taking over a small batch.
    """
    weights = torch.softmax(rewards.float() / eta, dim=0) * rewards.numel()
    return weights.clamp(max=weight_clip)


def weighted_reward_loss(
    parts: EditorParts,
    unet: UNet2DConditionModel,
    batch: EditBatch,
    dropout: ConditioningDropout = DEFAULT_DROPOUT,
    *,
    eta: float = 1.0,
    weight_clip: float = 5.0,
) -> tuple[torch.Tensor, Extras]:
    if batch.rewards is None:
        raise ValueError("batch: the weighted reward loss needs rewards")
    errors = denoising_errors(parts, unet, batch, dropout)
    weights = reward_weights(batch.rewards.to(errors.device), eta, weight_clip)
    loss = (weights * errors).mean()
    extras = {
        "mse": errors.mean().item(),
        "weight_min": weights.min().item(),
        "weight_max": weights.max().item(),
    }
    return loss, extras


def quality_suffix(level: int) -> str:
    """HIVE conditional reward: the text appended to the instruction for a quality level."""
    if not 1 <= level <= QUALITY_LEVELS:
        raise ValueError(f"level: must be 1..{QUALITY_LEVELS}, got {level}")
    return f", image quality is {QUALITY_WORDS[level - 1]} out of five"


def reward_levels(rewards: list[float]) -> list[int]:
    """Each reward's quantile bin among `rewards`, 1 (lowest fifth) to 5 (highest fifth).

    A reward equal to a bin edge goes to the higher bin, so when all rewards tie every
    example is "five", the level sampling asks for.
    """
    if not rewards:
        return []
    values = np.asarray(rewards, dtype=np.float64)
    edges = np.quantile(values, np.linspace(0, 1, QUALITY_LEVELS + 1)[1:-1])
    return [int(level) + 1 for level in np.searchsorted(edges, values, side="right")]


def conditional_reward_loss(
    parts: EditorParts,
    unet: UNet2DConditionModel,
    batch: EditBatch,
    dropout: ConditioningDropout = DEFAULT_DROPOUT,
) -> tuple[torch.Tensor, Extras]:
    """HIVE conditional reward: the reward enters as words appended to the instruction."""
    if batch.quality_levels is None:
        raise ValueError("batch: the conditional reward loss needs quality levels")
    instructions = [
        text + quality_suffix(level)
        for text, level in zip(batch.instructions, batch.quality_levels, strict=True)
    ]
    loss = denoising_errors(parts, unet, batch, dropout, instructions=instructions).mean()
    return loss, {"mse": loss.item(), "mean_level": float(np.mean(batch.quality_levels))}


def multireward_loss(
    parts: EditorParts,
    unet: UNet2DConditionModel,
    batch: EditBatch,
    condition: MultiRewardCondition,
    dropout: ConditioningDropout = DEFAULT_DROPOUT,
) -> tuple[torch.Tensor, Extras]:
    """Multi-Reward §4.2: the same denoising loss, with the three scores as a condition
    (sinusoidal features → the UNet's class-embedding MLP → added to the time embedding)."""
    if batch.aspects is None:
        raise ValueError("batch: the multi-reward loss needs aspect scores")
    class_labels = condition(batch.aspects.to(batch.source.device))
    errors = denoising_errors(parts, unet, batch, dropout, class_labels=class_labels)
    loss = errors.mean()
    return loss, {"mse": loss.item(), "mean_score": batch.aspects.float().mean().item()}


def dpo_loss(
    parts: EditorParts,
    unet: UNet2DConditionModel,
    reference_unet: UNet2DConditionModel,
    batch: PreferenceBatch,
    dropout: ConditioningDropout = DEFAULT_DROPOUT,
    *,
    beta: float = 2500.0,
) -> tuple[torch.Tensor, Extras]:
    """Diffusion-DPO (Wallace et al. 2023, Eq. 14) on chosen/rejected edits of one source.

    The chosen (w) and rejected (l) edits share noise and timestep; each error is the
    per-example mean over latent pixels, as in the reference implementation:
        loss = -log σ(-β/2 · [(‖ε−ε_θ(w)‖² − ‖ε−ε_ref(w)‖²) − (‖ε−ε_θ(l)‖² − ‖ε−ε_ref(l)‖²)])
    """
    pairs = batch.chosen.shape[0]
    latents = encode_target_latents(parts, torch.cat([batch.chosen, batch.rejected]))
    source_latents = encode_source_latents(parts, batch.source)
    text = encode_text(parts, batch.instructions)
    # One dropout draw per pair: chosen and rejected see the same conditioning.
    text, source_latents = apply_conditioning_dropout(
        text, source_latents, null_text_embedding(parts), dropout
    )
    noise = torch.randn_like(latents[:pairs]).repeat(2, 1, 1, 1)
    timesteps = random_timesteps(parts, pairs, latents.device).repeat(2)
    inputs = (latents, source_latents.repeat(2, 1, 1, 1), text.repeat(2, 1, 1), noise, timesteps)

    model_errors = per_sample_errors(parts, unet, *inputs)
    with torch.no_grad():
        reference_errors = per_sample_errors(parts, reference_unet, *inputs)
    model_chosen, model_rejected = model_errors.chunk(2)
    reference_chosen, reference_rejected = reference_errors.chunk(2)

    # Implicit rewards: how much better than the reference the model denoises each edit.
    chosen_reward = -0.5 * beta * (model_chosen - reference_chosen)
    rejected_reward = -0.5 * beta * (model_rejected - reference_rejected)
    margin = chosen_reward - rejected_reward
    weights = batch.weights.to(margin.device, margin.dtype)
    loss = (weights * -F.logsigmoid(margin)).sum() / weights.sum()
    extras = {
        "implicit_accuracy": (margin > 0).float().mean().item(),
        "reward_margin": margin.mean().item(),
        "chosen_reward": chosen_reward.mean().item(),
        "rejected_reward": rejected_reward.mean().item(),
        "mse_chosen": model_chosen.mean().item(),
        "mse_rejected": model_rejected.mean().item(),
    }
    return loss, extras
