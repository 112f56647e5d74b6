"""Editors that render variants: the offline procedural one and InstructPix2Pix pipelines.

`load_editor(spec)` returns an `Editor`: "procedural", "tiny" (the seeded random tiny
editor, the "tiny" fine-tuning base) or a pipeline directory (stock diffusers layout, e.g.
`work_dir/pipeline/` from `train_editor`). Its `name` and `version` go to
`Variant.generator` and `Variant.model_version`.

A fine-tuned pipeline's `editloop_finetune.json` says how to sample it:
* conditional reward (HIVE): append ", image quality is five out of five";
* multi-reward: the exported UNet already has (5, 5, 5) baked in (training/multireward.py),
  so nothing is needed; `reward_condition=(f, p, q)` bakes other scores from the
  conditional UNet saved next to it.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from training.procedural import DEMO_PHOTOS, GOOD_STRENGTH, RECIPES, EditRecipe

PROCEDURAL = "procedural"
TINY = "tiny"
MAX_LABEL = 100  # Variant.generator / model_version are CharField(max_length=100)


@runtime_checkable
class Editor(Protocol):
    name: str  # → Variant.generator
    version: str  # → Variant.model_version

    def edit(
        self,
        source: Image.Image,
        instruction: str,
        *,
        seed: int,
        guidance_scale: float = 7.5,
        image_guidance_scale: float = 1.5,
    ) -> Image.Image: ...


def load_editor(spec: str, **options: Any) -> Editor:
    """The editor `spec` names: "procedural", "tiny" (the random tiny editor) or a diffusers
    pipeline directory; `options` go to the editor's constructor."""
    if spec == PROCEDURAL:
        return ProceduralEditor()
    if spec == TINY:
        return TinyEditor(**options)
    if (Path(spec) / "model_index.json").is_file():
        return DiffusersEditor(Path(spec), **options)
    raise ValueError(
        f"editor: {spec!r} is neither 'procedural', 'tiny' nor a diffusers pipeline directory "
        "(a folder with model_index.json)"
    )


# --- procedural ------------------------------------------------------------------------------


def _normalise(text: str) -> str:
    return " ".join(text.lower().strip().rstrip(".!").split())


def _recipe_pattern(recipe: EditRecipe) -> re.Pattern[str]:
    template = re.escape(_normalise(recipe.instruction)).replace(r"\{subject\}", r"(?P<subject>.+)")
    return re.compile(f"^{template}$")


class ProceduralEditor:
    """The demo's PIL editor (training/procedural.py): the recipe whose instruction matches,
    its own operation at a strength drawn from the "good" range with `seed`."""

    name = PROCEDURAL
    version = "procedural-1"

    def __init__(self) -> None:
        self.patterns = [(_recipe_pattern(recipe), recipe) for recipe in RECIPES]

    def recipe_for(self, instruction: str) -> EditRecipe:
        text = _normalise(instruction)
        for pattern, recipe in self.patterns:
            if pattern.match(text):
                return recipe
        known = sorted({recipe.instruction_for(DEMO_PHOTOS[0]) for recipe in RECIPES})
        raise ValueError(
            f"instruction: the procedural editor has no recipe for {instruction!r}; "
            f"it knows {len(known)} demo instructions, e.g. {known[:3]}"
        )

    def edit(
        self,
        source: Image.Image,
        instruction: str,
        *,
        seed: int,
        guidance_scale: float = 7.5,
        image_guidance_scale: float = 1.5,
    ) -> Image.Image:
        recipe = self.recipe_for(instruction)
        strength = float(np.random.default_rng(seed).uniform(*GOOD_STRENGTH))
        return recipe.operation(source.convert("RGB"), strength)


# --- diffusers -------------------------------------------------------------------------------


def read_finetune_metadata(pipeline_dir: Path) -> dict[str, Any]:
    from training.trainer import METADATA_FILE

    path = Path(pipeline_dir) / METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _weights_digest(pipeline_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted((pipeline_dir / "unet").glob("*")):
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:12]


def fit_to_resolution(image: Image.Image, resolution: int) -> Image.Image:
    """Shorter side to `resolution`, both sides to multiples of 8 (the VAE's stride)."""
    scale = resolution / min(image.size)
    width, height = (max(8, round(side * scale / 8) * 8) for side in image.size)
    return image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)


class PipelineEditor:
    """Edits with a `StableDiffusionInstructPix2PixPipeline`, loaded on the first edit.

    The source is resized to `resolution` (shorter side) for sampling and the result back
    to the source's size, so variants line up with their source.
    """

    name = "instruct-pix2pix"
    version = ""
    steps = 20
    resolution = 512
    instruction_suffix = ""

    def load_pipeline(self) -> Any:
        raise NotImplementedError

    @cached_property
    def pipeline(self) -> Any:
        pipeline = self.load_pipeline()
        pipeline.set_progress_bar_config(disable=True)
        # Half precision on a GPU, as InstructPix2Pix is usually sampled; fp32 on the CPU.
        return pipeline.to(_device(), _dtype())

    def edit(
        self,
        source: Image.Image,
        instruction: str,
        *,
        seed: int,
        guidance_scale: float = 7.5,
        image_guidance_scale: float = 1.5,
    ) -> Image.Image:
        image = fit_to_resolution(source, self.resolution)
        # A CPU generator: the same seed gives the same edit on any device.
        generator = torch.Generator(device="cpu").manual_seed(seed)
        result = self.pipeline(
            instruction + self.instruction_suffix,
            image=image,
            num_inference_steps=self.steps,
            guidance_scale=guidance_scale,
            image_guidance_scale=image_guidance_scale,
            generator=generator,
        ).images[0]
        return result.resize(source.size, Image.Resampling.BICUBIC)


TEXT_TO_IMAGE_CHANNELS = 4  # a plain Stable Diffusion UNet: noisy latents only


def _unet_in_channels(pipeline_dir: Path) -> int | None:
    config = pipeline_dir / "unet" / "config.json"
    return json.loads(config.read_text()).get("in_channels") if config.is_file() else None


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype() -> torch.dtype:
    return torch.float16 if torch.cuda.is_available() else torch.float32


class DiffusersEditor(PipelineEditor):
    """Stock pipeline from a local directory (a base editor or `train_editor`'s output).

    `resolution` defaults to the fine-tuning resolution, or 512. `reward_condition` picks
    other scores than (5, 5, 5) for a multi-reward pipeline.
    """

    def __init__(
        self,
        pipeline_dir: Path,
        steps: int = 20,
        resolution: int | None = None,
        reward_condition: tuple[float, float, float] | None = None,
    ) -> None:
        self.pipeline_dir = Path(pipeline_dir)
        self.steps = steps
        self.metadata = read_finetune_metadata(self.pipeline_dir)
        config = self.metadata.get("config", {})
        self.resolution = resolution or int(config.get("resolution", 512))
        self.method: str | None = self.metadata.get("method")
        self.instruction_suffix = self.metadata.get("instruction_suffix", "")
        if reward_condition is not None and self.method != "multireward":
            raise ValueError("reward_condition: only a multi-reward pipeline takes scores")
        self.reward_condition = reward_condition
        self.name = f"instruct-pix2pix-{self.method}" if self.method else "instruct-pix2pix"
        self.is_text_to_image = _unet_in_channels(self.pipeline_dir) == TEXT_TO_IMAGE_CHANNELS
        condition = "" if reward_condition is None else "+r" + ",".join(map(str, reward_condition))
        label = f"{self.pipeline_dir.parent.name}/{self.pipeline_dir.name}"
        self.version = f"{label}@{_weights_digest(self.pipeline_dir)}{condition}"[-MAX_LABEL:]

    @property
    def description(self) -> str:
        """What this editor is, in words (evaluation reports name the base they compared)."""
        if self.is_text_to_image:
            return (
                f"{self.pipeline_dir}: a text-to-image Stable Diffusion pipeline, its UNet "
                "widened to 8 input channels with zero weights (it ignores the source photo, "
                "as the fine-tune started)"
            )
        kind = f"a {self.method} fine-tune" if self.method else "an InstructPix2Pix pipeline"
        return f"{self.pipeline_dir}: {kind}"

    def load_pipeline(self) -> Any:
        from diffusers import StableDiffusionInstructPix2PixPipeline

        if self.is_text_to_image:
            # A plain Stable Diffusion base: widened exactly as fine-tuning widens it.
            from training.pix2pix import build_pipeline, load_editor_parts

            return build_pipeline(load_editor_parts(str(self.pipeline_dir)))
        pipeline = StableDiffusionInstructPix2PixPipeline.from_pretrained(
            self.pipeline_dir, local_files_only=True
        )
        if self.reward_condition is not None:
            pipeline.unet = self._unet_with_condition(self.reward_condition)
        return pipeline

    def _unet_with_condition(self, scores: tuple[float, float, float]) -> Any:
        from diffusers import UNet2DConditionModel

        from training.multireward import bake_reward_condition

        folder = self.pipeline_dir / self.metadata["multireward_unet"]
        conditional = UNet2DConditionModel.from_pretrained(folder, local_files_only=True)
        return bake_reward_condition(conditional, scores)


class TinyEditor(PipelineEditor):
    """The seeded tiny random editor ("tiny" base), built in memory: edits are noise."""

    name = "instruct-pix2pix-tiny"
    description = "tiny: the seeded tiny random-init editor"

    def __init__(self, seed: int = 0, steps: int = 4) -> None:
        from training.tiny import TINY_RESOLUTION

        self.seed = seed
        self.steps = steps
        self.resolution = TINY_RESOLUTION
        self.version = f"tiny-random-init-seed{seed}"

    def load_pipeline(self) -> Any:
        from training.pix2pix import build_pipeline
        from training.tiny import build_tiny_editor

        return build_pipeline(build_tiny_editor(self.seed))
