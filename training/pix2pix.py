"""InstructPix2Pix components: load them, encode with them, save them as a stock pipeline.

`load_editor_parts` reads a local diffusers directory laid out like
`timbrooks/instruct-pix2pix` (unet/, vae/, text_encoder/, tokenizer/, scheduler/) or builds
the tiny random editor for "tiny". A plain Stable Diffusion directory also works: its
4-channel UNet gets 4 more zero-initialised input channels for the source latents
(InstructPix2Pix §3.2), so it starts out as the text-to-image model it was.
`save_pipeline` writes what `StableDiffusionInstructPix2PixPipeline.from_pretrained` loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    EulerAncestralDiscreteScheduler,
    StableDiffusionInstructPix2PixPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel, CLIPTokenizer

LATENT_CHANNELS = 4
EDITOR_IN_CHANNELS = 2 * LATENT_CHANNELS  # noisy edited latents + source latents


@dataclass
class EditorParts:
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    noise_scheduler: DDPMScheduler
    is_random_init: bool = False  # tiny editor: its outputs mean nothing

    def to(self, device: torch.device | str, frozen_dtype: torch.dtype | None = None) -> None:
        """Move everything to `device`; the frozen VAE and text encoder may go to a lower
        precision (the UNet keeps fp32 master weights; autocast handles its compute)."""
        self.unet.to(device)
        for frozen in (self.vae, self.text_encoder):
            if frozen_dtype is None:
                frozen.to(device)  # to(device, None) would make diffusers warn about dtypes
            else:
                frozen.to(device, frozen_dtype)


def load_editor_parts(base: str, seed: int = 0) -> EditorParts:
    """The seeded tiny editor for "tiny"; otherwise a local diffusers directory."""
    if base == "tiny":
        from training.tiny import build_tiny_editor

        return build_tiny_editor(seed)
    directory = Path(base)
    if not (directory / "unet").is_dir():
        raise ValueError(
            f"base: {base!r} is neither 'tiny' nor a diffusers directory with a unet/ folder"
        )
    local = {"local_files_only": True}
    unet = UNet2DConditionModel.from_pretrained(directory, subfolder="unet", **local)
    parts = EditorParts(
        unet=widen_conv_in(unet),
        vae=AutoencoderKL.from_pretrained(directory, subfolder="vae", **local).eval(),
        text_encoder=CLIPTextModel.from_pretrained(
            directory, subfolder="text_encoder", **local
        ).eval(),
        tokenizer=CLIPTokenizer.from_pretrained(directory, subfolder="tokenizer", **local),
        # Training noise is DDPM whatever the saved sampler is (the InstructPix2Pix script).
        noise_scheduler=DDPMScheduler.from_pretrained(directory, subfolder="scheduler", **local),
    )
    parts.is_random_init = _read_is_random_init(directory)
    return parts


def _read_is_random_init(directory: Path) -> bool:
    # A pipeline fine-tuned from the tiny editor stays "random init" when trained further.
    meta = directory / "editloop_finetune.json"
    return bool(meta.is_file() and json.loads(meta.read_text()).get("is_random_init"))


def widen_conv_in(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """Give a text-to-image UNet the 4 extra input channels for the source latents.

    InstructPix2Pix §3.2: the new channels' weights start at zero, so the widened model
    computes exactly what the original did until training moves them.
    """
    old = unet.conv_in
    if old.in_channels == EDITOR_IN_CHANNELS:
        return unet
    if old.in_channels != LATENT_CHANNELS:
        raise ValueError(f"unet: conv_in has {old.in_channels} input channels, expected 4 or 8")
    new = torch.nn.Conv2d(
        EDITOR_IN_CHANNELS,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        dtype=old.weight.dtype,
        device=old.weight.device,
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :LATENT_CHANNELS] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=EDITOR_IN_CHANNELS)
    return unet


def build_pipeline(
    parts: EditorParts, unet: UNet2DConditionModel | None = None
) -> StableDiffusionInstructPix2PixPipeline:
    """The stock pipeline over these parts; `unet` overrides `parts.unet` (the EMA weights,
    or a multi-reward UNet with its condition baked in). The sampler is Euler ancestral,
    as in `timbrooks/instruct-pix2pix`."""
    return StableDiffusionInstructPix2PixPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        unet=unet if unet is not None else parts.unet,
        scheduler=EulerAncestralDiscreteScheduler.from_config(parts.noise_scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_pipeline(
    parts: EditorParts, out_dir: Path, unet: UNet2DConditionModel | None = None
) -> Path:
    """Write a directory stock `StableDiffusionInstructPix2PixPipeline.from_pretrained` loads."""
    out_dir = Path(out_dir)
    build_pipeline(parts, unet).save_pretrained(out_dir)
    return out_dir


# --- encoding -----------------------------------------------------------------------


def tokenize(tokenizer: CLIPTokenizer, texts: list[str]) -> torch.Tensor:
    # Padded to the full length like the pipeline does, so training sees what sampling sees.
    return tokenizer(
        texts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


@torch.no_grad()
def encode_text(parts: EditorParts, texts: list[str]) -> torch.Tensor:
    """CLIP last hidden states, (batch, tokens, hidden): the UNet's cross-attention input."""
    device = parts.text_encoder.device
    ids = tokenize(parts.tokenizer, texts).to(device)
    return parts.text_encoder(ids)[0]


@torch.no_grad()
def encode_target_latents(parts: EditorParts, pixels: torch.Tensor) -> torch.Tensor:
    """Edited images → scaled VAE latents, sampled (the InstructPix2Pix training script)."""
    pixels = pixels.to(parts.vae.device, parts.vae.dtype)
    latents = parts.vae.encode(pixels).latent_dist.sample()
    return latents * parts.vae.config.scaling_factor


@torch.no_grad()
def encode_source_latents(parts: EditorParts, pixels: torch.Tensor) -> torch.Tensor:
    """Source images → VAE mode, unscaled: exactly what the pipeline concatenates at sampling."""
    pixels = pixels.to(parts.vae.device, parts.vae.dtype)
    return parts.vae.encode(pixels).latent_dist.mode()
