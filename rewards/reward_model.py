"""BlipRewardModel: an ImageReward-style BLIP scorer for (source, instruction, edited) triples.

ImageReward (Xu et al. 2023, §3.2) scores a generated image by letting the BLIP text
encoder read the prompt and cross-attend to the ViT's visual tokens, then feeding the
[CLS] state to an MLP. An *edit* is judged against its source ("preserving"), so the
vision encoder runs on both images and their tokens are concatenated, each tagged with a
learned segment embedding (edited = 0, source = 1), before the text encoder attends to
them (HIVE §3.2 scores an edit from both images the same way). With fusion="diff" (the
default) change tokens join them: per-patch differences of the frozen features, which
say how *much* the edit changed (see `change_tokens`). The [CLS] state feeds an overall
head and one head per aspect (Multi-Reward §3: following / preserving / quality, 0-5):

- `coarse`: overall head only;
- `fine`:   overall head + independent aspect heads;
- `cbm`:    overall = a learned linear aggregate of the predicted aspects, a concept
            bottleneck ("Beyond Thumbs Up/Down", concept-bottleneck reward models).

Aspect heads predict on the 0-5 scale as 5 * sigmoid(logit), so a prediction can never
leave the scale annotators use. The overall score is an unbounded scalar: Bradley-Terry
only sees differences, so its offset and scale mean nothing on their own.

The lower part is frozen (ImageReward freezes 70% of the layers): the vision patch
embedding plus the first round(f * L) ViT layers, and likewise the text embeddings plus
the first round(f * L) text layers. The frozen vision output depends on the image alone,
so it can be cached on disk (see feature_cache.py) and `forward(..., from_features=True)`
skips it.

The frozen text layers read the plain ViT tokens of the edit and its source, as the
pretrained BLIP layers were trained to, and the new fusion parameters (segment
embeddings, change tokens) enter at the first trainable text layer (fusion_at="trainable";
format-1 versions fused at every layer). With `frozen_prefix=True` (which needs the whole
vision tower frozen, freeze_fraction=1) everything below that layer depends only on
(instruction, source, edit), so its output, the text prefix, can be cached too
(`text_prefix`, `forward(..., prefix=...)`), and a retrain runs only the trainable top
layers: with 70% of a base-size text encoder frozen, a cached step takes
about 0.3 of the time of a step from pixels (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from transformers import (
    AutoTokenizer,
    BlipConfig,
    BlipForImageTextRetrieval,
    BlipTextModel,
    BlipVisionModel,
    PreTrainedTokenizerBase,
)
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.blip import BlipImageProcessorPil

from rewards.bases import SAFETENSORS, SAFETENSORS_INDEX, inspect_blip_itm, is_imagereward
from rewards.config import DEFAULT_ASPECTS, FUSIONS, HEAD_MODES, TINY, RewardModelConfig
from rewards.tiny import BlipParts, build_tiny_blip

__all__ = [
    "DEFAULT_ASPECTS", "FUSIONS", "HEAD_MODES", "TINY", "BlipRewardModel", "RewardModelConfig",
    "RewardOutput",
]  # fmt: skip

SCORE_MAX = 5.0
CONFIG_FILE = "reward_model.json"
WEIGHTS_FILE = "model.safetensors"
TORCH_WEIGHTS_FILE = "model.pt"
FORMAT_VERSION = 2  # 2: change_features and fusion_at (see `load` for format 1)


@dataclass
class RewardOutput:
    overall: torch.Tensor  # (N,)
    aspects: torch.Tensor | None  # (N, A) on the 0-5 scale; None for `coarse`


def frozen_layer_count(fraction: float, layers: int) -> int:
    return round(fraction * layers)


def _head(hidden: int, width: int, dropout: float) -> nn.Sequential:
    # ImageReward's MLP head, shortened: one hidden layer is plenty on top of BLIP.
    return nn.Sequential(
        nn.Linear(hidden, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, 1)
    )


def _imagereward_head(hidden: int, widths: Sequence[int]) -> nn.Sequential:
    # ImageReward/ImageReward.py, class MLP: linear layers hidden -> 1024 -> 128 -> 64 -> 16
    # -> 1 with dropouts 0.2, 0.2, 0.1 and no activations (its ReLUs are commented out).
    # The indices of its Linear layers (0, 2, 4, 6, 7) are kept so its weights load as-is.
    a, b, c, d = widths
    return nn.Sequential(
        nn.Linear(hidden, a), nn.Dropout(0.2), nn.Linear(a, b), nn.Dropout(0.2),
        nn.Linear(b, c), nn.Dropout(0.1), nn.Linear(c, d), nn.Linear(d, 1),
    )  # fmt: skip


def _overall_head(config: RewardModelConfig, hidden: int) -> nn.Sequential | None:
    if config.heads == "cbm":
        return None
    if config.overall_head == "imagereward":
        return _imagereward_head(hidden, config.overall_head_widths)
    return _head(hidden, config.head_hidden, config.head_dropout)


def load_blip_parts(path: str | Path) -> BlipParts:
    """Read a local blip-itm-style directory (no hub access: the path must exist), after
    checking its layout and weights (rewards.bases: the wrong kind raises BaseInvalid)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a BLIP checkpoint directory (no config.json); pass base='tiny' "
            "or a local copy of e.g. Salesforce/blip-itm-base-coco"
        )
    inspect_blip_itm(path.resolve())
    # safetensors where there is one (nothing in it can run code); otherwise transformers
    # reads pytorch_model.bin with torch.load(weights_only=True).
    safetensors = (path / SAFETENSORS).is_file() or (path / SAFETENSORS_INDEX).is_file()
    model = BlipForImageTextRetrieval.from_pretrained(
        path, local_files_only=True, use_safetensors=safetensors
    )
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    image_processor = BlipImageProcessorPil.from_pretrained(path, local_files_only=True)
    return BlipParts(model.eval(), tokenizer, image_processor)


def _load_base(
    config: RewardModelConfig,
) -> tuple[BlipParts, RewardModelConfig, dict[str, torch.Tensor] | None]:
    """The base's BLIP parts, the config with what the base fixes, and the overall head's
    starting weights (ImageReward's MLP, with its score normalisation; else None)."""
    if config.base == TINY:
        return build_tiny_blip(config.seed), config, None
    if not is_imagereward(config.base):
        return load_blip_parts(config.base), config, None
    from rewards.imagereward import load_imagereward  # only this base needs it

    start = load_imagereward(config.base)
    config = replace(
        config,
        overall_head="imagereward",
        overall_head_widths=start.head_widths,
        score_mean=start.score_mean,
        score_std=start.score_std,
    )
    return start.parts, config, start.head_state


class BlipRewardModel(nn.Module):
    def __init__(
        self,
        config: RewardModelConfig,
        vision: BlipVisionModel,
        text: BlipTextModel,
        tokenizer: PreTrainedTokenizerBase,
        image_processor: BlipImageProcessorPil,
    ) -> None:
        super().__init__()
        self.config = config
        self.vision = vision
        self.text = text
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        hidden_v, hidden_t = vision.config.hidden_size, text.config.hidden_size
        # Learned segment embeddings: 0 edited, 1 source, 2 change (the HIVE/ImageReward
        # concatenation of two images needs the model to know which token is which).
        self.segment_embedding = nn.Parameter(torch.randn(3, hidden_v) * 0.02)
        self.change_norm = self.change_proj = None
        if config.fusion == "diff":
            stats = 2 * hidden_v * self.change_levels  # signed and absolute, per level
            self.change_norm = nn.BatchNorm1d(stats)
            self.change_proj = nn.Linear(stats, hidden_v)
        width, dropout = config.head_hidden, config.head_dropout
        self.overall_head = _overall_head(config, hidden_t)
        self.aspect_heads = nn.ModuleDict(
            {}
            if config.heads == "coarse"
            else {aspect: _head(hidden_t, width, dropout) for aspect in config.aspects}
        )
        self.aggregate = None
        if config.heads == "cbm":
            self.aggregate = nn.Linear(len(config.aspects), 1)
            nn.init.constant_(self.aggregate.weight, 1.0 / len(config.aspects))
            nn.init.zeros_(self.aggregate.bias)
        self._fingerprint: str | None = None
        self._prefix_fingerprint: str | None = None
        self._check_frozen_prefix()
        self._freeze()

    def _check_frozen_prefix(self) -> None:
        layers = len(self.text.encoder.layer)
        if self.config.frozen_prefix and not 0 < self.n_frozen_text_layers < layers:
            raise ValueError(
                f"frozen_prefix needs some frozen and some trainable text layers; "
                f"text_freeze_fraction {self.text_freeze_fraction} freezes "
                f"{self.n_frozen_text_layers} of {layers}"
            )

    # --- construction, saving, loading ------------------------------------------------

    @classmethod
    def build(cls, config: RewardModelConfig) -> BlipRewardModel:
        """A fresh reward model on `config.base`: `tiny` random init, a local BLIP directory,
        or ImageReward's checkpoint (whose MLP then starts the overall head)."""
        parts, config, head_state = _load_base(config)
        config = replace(config, blip_config=parts.model.config.to_dict())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)  # heads and segment embedding: same seed, same init
            model = cls(
                config,
                parts.model.vision_model,
                parts.model.text_encoder,
                parts.tokenizer,
                parts.image_processor,
            )
        if head_state is not None and model.overall_head is not None:
            model.overall_head.load_state_dict(head_state)
        return model

    @classmethod
    def from_base(cls, base: str | Path = TINY, **options: Any) -> BlipRewardModel:
        """Shorthand: `from_base("tiny", heads="cbm", freeze_fraction=0.5)`."""
        return cls.build(RewardModelConfig(base=str(base), **options))

    def config_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data, without the (long) BLIP architecture dict."""
        data = asdict(self.config)
        data.pop("blip_config")
        return {**data, "is_random_init": self.is_random_init}

    def save(self, directory: str | Path) -> Path:
        """A self-contained version directory: config JSON, weights, tokenizer, preprocessing."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        try:
            from safetensors.torch import save_file

            save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
        except ImportError:  # safetensors is optional; torch.save is the fallback
            torch.save(state, directory / TORCH_WEIGHTS_FILE)
        payload = {"format_version": FORMAT_VERSION, **asdict(self.config)}
        (directory / CONFIG_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))
        self.tokenizer.save_pretrained(directory)
        self.image_processor.save_pretrained(directory)
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, map_location: str | torch.device = "cpu"
    ) -> BlipRewardModel:
        """Load a version saved by `save`; the original base directory is not needed."""
        directory = Path(directory)
        payload = json.loads((directory / CONFIG_FILE).read_text())
        if payload.pop("format_version", 1) < 2:
            # Format 1 compared only the frozen level and fused at every text layer.
            payload.setdefault("change_features", "frozen")
            payload.setdefault("fusion_at", "every")
        config = RewardModelConfig(**payload)
        blip_config = BlipConfig.from_dict(config.blip_config)
        model = cls(
            config,
            BlipVisionModel(blip_config.vision_config),
            BlipTextModel(blip_config.text_config, add_pooling_layer=False),
            AutoTokenizer.from_pretrained(directory, local_files_only=True),
            BlipImageProcessorPil.from_pretrained(directory, local_files_only=True),
        )
        model.load_state_dict(_read_state(directory))
        return model.to(map_location).eval()

    # --- properties ----------------------------------------------------------------------

    @property
    def aspects(self) -> list[str]:
        return list(self.config.aspects) if self.config.heads != "coarse" else []

    @property
    def is_random_init(self) -> bool:
        """True for the `tiny` base: label its scores "tiny random-init model" in any UI."""
        return self.config.base == TINY

    @property
    def image_size(self) -> int:
        return int(self.vision.config.image_size)

    @property
    def device(self) -> torch.device:
        return self.segment_embedding.device

    @property
    def dtype(self) -> torch.dtype:
        return self.segment_embedding.dtype

    @property
    def n_frozen_vision_layers(self) -> int:
        return frozen_layer_count(self.config.freeze_fraction, len(self.vision.encoder.layers))

    @property
    def text_freeze_fraction(self) -> float:
        fraction = self.config.text_freeze_fraction
        return self.config.freeze_fraction if fraction is None else fraction

    @property
    def n_frozen_text_layers(self) -> int:
        return frozen_layer_count(self.text_freeze_fraction, len(self.text.encoder.layer))

    @property
    def has_frozen_vision(self) -> bool:
        """The patch embedding is frozen whenever anything is: only then can features be cached."""
        return self.config.freeze_fraction > 0

    @property
    def frozen_fingerprint(self) -> str:
        """sha256 of the frozen vision weights: the cache key's "same encoder" part."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            _digest_weights(digest, self._frozen_vision_modules())
            digest.update(f"{self.dtype} levels={self.change_levels}".encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    @property
    def prefix_fingerprint(self) -> str:
        """sha256 of everything a cached text prefix depends on besides its inputs: the
        frozen vision and text weights, the vocabulary and the text length limit."""
        if self._prefix_fingerprint is None:
            digest = hashlib.sha256(self.frozen_fingerprint.encode())
            _digest_weights(digest, self._frozen_text_modules())
            vocabulary = sorted(self.tokenizer.get_vocab().items())
            digest.update(json.dumps([vocabulary, self.config.max_text_length]).encode())
            self._prefix_fingerprint = digest.hexdigest()
        return self._prefix_fingerprint

    # --- freezing ----------------------------------------------------------------------

    def _frozen_vision_modules(self) -> list[nn.Module]:
        if not self.has_frozen_vision:
            return []
        layers = list(self.vision.encoder.layers[: self.n_frozen_vision_layers])
        whole_tower = self.n_frozen_vision_layers == len(self.vision.encoder.layers)
        return [self.vision.embeddings, *layers, *([self.vision.post_layernorm] * whole_tower)]

    def _frozen_text_modules(self) -> list[nn.Module]:
        if self.text_freeze_fraction <= 0:
            return []
        return [self.text.embeddings, *self.text.encoder.layer[: self.n_frozen_text_layers]]

    def _freeze(self) -> None:
        for module in [*self._frozen_vision_modules(), *self._frozen_text_modules()]:
            module.requires_grad_(False)

    def train(self, mode: bool = True) -> BlipRewardModel:
        # Frozen parts always run in eval mode, so features computed once (and cached)
        # equal the ones a training step would compute.
        super().train(mode)
        for module in [*self._frozen_vision_modules(), *self._frozen_text_modules()]:
            module.eval()
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """All but the frozen weights (checkpoints stay small on a base-size model); buffers
        such as BatchNorm's running statistics are kept."""
        frozen = {name for name, p in self.named_parameters() if not p.requires_grad}
        return {k: v.detach().clone() for k, v in self.state_dict().items() if k not in frozen}

    # --- inputs ------------------------------------------------------------------------

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> normalised pixels (N, 3, S, S), BLIP's own preprocessing."""
        rgb = [image.convert("RGB") for image in images]
        return self.image_processor(images=rgb, return_tensors="pt")["pixel_values"]

    def tokenize(self, instructions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.tokenizer(
            list(instructions),
            padding="longest",
            truncation=True,
            max_length=self.config.max_text_length,
            return_tensors="pt",
        )
        return encoded["input_ids"], encoded["attention_mask"]

    # --- forward -----------------------------------------------------------------------

    @property
    def change_levels(self) -> int:
        """How many feature levels the change tokens compare: the frozen output, and with
        change_features="frozen+patch" also the patch embeddings."""
        return 2 if self.config.fusion == "diff" and self.config.change_features != "frozen" else 1

    @torch.no_grad()
    def encode_frozen(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """What the feature cache stores: the frozen vision part's output (N, T, H), and
        with two change levels the patch embeddings after it, (N, 2T, H)."""
        if not self.has_frozen_vision:
            raise ValueError(
                "freeze_fraction is 0: nothing is frozen, so there is nothing to cache"
            )
        return self._features(pixel_values)

    def _features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        embedded = self.vision.embeddings(pixel_values.to(self.device, self.dtype))
        hidden = embedded
        for layer in self.vision.encoder.layers[: self.n_frozen_vision_layers]:
            hidden = layer(hidden)
        return torch.cat([hidden, embedded], dim=1) if self.change_levels == 2 else hidden

    def _frozen_or_embedded(self, images: torch.Tensor, from_features: bool) -> torch.Tensor:
        """Features (see `encode_frozen`): the first T tokens enter the first trainable
        ViT layer."""
        if from_features:
            return images.to(self.device, self.dtype)
        if self.has_frozen_vision:
            return self.encode_frozen(images)
        return self._features(images)

    def _trainable_input(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, : features.shape[1] // self.change_levels]

    def _trainable_vision(self, hidden: torch.Tensor) -> torch.Tensor:
        for layer in self.vision.encoder.layers[self.n_frozen_vision_layers :]:
            hidden = layer(hidden)
        return self.vision.post_layernorm(hidden)

    def _vision(
        self, edited: torch.Tensor, source: torch.Tensor, group: torch.Tensor, from_features: bool
    ) -> tuple[torch.Tensor, ...]:
        """Frozen features and ViT outputs of the edits and (per edit) of their sources."""
        edited_frozen = self._frozen_or_embedded(edited, from_features)
        source_frozen = self._frozen_or_embedded(source, from_features)
        edited_out = self._trainable_vision(self._trainable_input(edited_frozen))
        source_out = self._trainable_vision(self._trainable_input(source_frozen))[group]
        return edited_frozen, source_frozen[group], edited_out, source_out

    def _fuse(
        self,
        edited_frozen: torch.Tensor,
        source_frozen: torch.Tensor,
        edited_out: torch.Tensor,
        source_out: torch.Tensor,
    ) -> torch.Tensor:
        tokens = [edited_out + self.segment_embedding[0], source_out + self.segment_embedding[1]]
        if self.config.fusion == "diff":
            change = self.change_tokens(edited_frozen, source_frozen)
            tokens.append(change + self.segment_embedding[2])
        return torch.cat(tokens, dim=1)

    def change_tokens(self, edited: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """(N, 1 + T, H): how much each patch changed, after a whole-image token.

        The size of a change is what separates a weak, a good and an overdone edit, but
        a pre-LN ViT cannot see it: LayerNorm divides each token's size out. So the signed
        and absolute differences of the features, |f(edit) - f(source)| as siamese
        change detectors compare them, plus their mean over the image, are normalised per
        channel with BatchNorm (across edits, so one edit's change stays larger than
        another's) and projected into tokens the text encoder cross-attends to.

        Two levels by default (change_features="frozen+patch"): the frozen output, where a
        pretrained ViT sees what changed, and the patch embeddings, a linear map of the
        pixel difference, where how much changed survives intact (deep random or
        pretrained layers mix it with the photo's content; docs/reward_model.md).
        """
        levels = self.change_levels
        edited_levels, source_levels = edited.chunk(levels, 1), source.chunk(levels, 1)
        differences = [e - s for e, s in zip(edited_levels, source_levels, strict=True)]
        stats = torch.cat([part for d in differences for part in (d, d.abs())], dim=-1)
        stats = torch.cat([stats.mean(1, keepdim=True), stats], dim=1)
        normalised = self.change_norm(stats.flatten(0, 1)).view(stats.shape)
        return self.change_proj(normalised)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        edited: torch.Tensor,
        source: torch.Tensor,
        group: torch.Tensor | None = None,
        from_features: bool = False,
        prefix: torch.Tensor | None = None,
    ) -> RewardOutput:
        """Score N edits.

        input_ids/attention_mask (G, L) and source (G, ...) hold one row per group (a task:
        one source photo and instruction); edited (N, ...) holds the edits and group (N,)
        says which row each edit belongs to, so a shared source is read once. Without
        `group`, G == N. Images are pixels (., 3, S, S) or, with from_features, cached
        frozen features (., T, H). With frozen_prefix, `prefix` (N, L, H) may carry the
        cached output of the frozen text layers (`text_prefix`), which then do not run.
        """
        group, input_ids, mask = self._per_edit(input_ids, attention_mask, edited, group)
        vision = self._vision(edited, source, group, from_features)
        if self.config.fusion_at == "every":  # format-1 versions: fused tokens everywhere
            return self._heads(self._text_reading(self._fuse(*vision), input_ids, mask))
        if prefix is None:
            prefix = self._text_prefix(input_ids, mask, *vision[2:])
        hidden = self._text_layers(
            self.text.encoder.layer[self.n_frozen_text_layers :],
            prefix.to(self.device, self.dtype),
            mask,
            self._fuse(*vision),
        )
        return self._heads(hidden[:, 0])

    def _text_reading(
        self, visual: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """[CLS] of the whole text encoder cross-attending to `visual` at every layer."""
        visual_mask = torch.ones(visual.shape[:2], dtype=torch.long, device=self.device)
        text = self.text(
            input_ids=input_ids,
            attention_mask=mask,
            encoder_hidden_states=visual,
            encoder_attention_mask=visual_mask,
        )
        return text.last_hidden_state[:, 0]

    def text_prefix(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        edited: torch.Tensor,
        source: torch.Tensor,
        group: torch.Tensor | None = None,
        from_features: bool = False,
    ) -> torch.Tensor:
        """(N, L, H): the output of the frozen text layers (frozen_prefix models only), what
        the feature cache stores per (instruction, source, edit). Arguments as `forward`."""
        if not self.config.frozen_prefix:
            raise ValueError("text_prefix needs a model built with frozen_prefix=True")
        group, input_ids, mask = self._per_edit(input_ids, attention_mask, edited, group)
        with torch.no_grad():
            _, _, edited_out, source_out = self._vision(edited, source, group, from_features)
            return self._text_prefix(input_ids, mask, edited_out, source_out)

    def _per_edit(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        edited: torch.Tensor,
        group: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The group of each edit (each its own without one) and its instruction's tokens."""
        if group is None:
            group = torch.arange(edited.shape[0])
        group = group.to(self.device)
        return group, input_ids.to(self.device)[group], attention_mask.to(self.device)[group]

    def _text_prefix(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        edited_out: torch.Tensor,
        source_out: torch.Tensor,
    ) -> torch.Tensor:
        # The pretrained layers read plain ViT tokens: no segment embedding, no change tokens.
        # (No no_grad here: below them a trainable ViT layer may still learn through them.)
        return self._text_layers(
            self.text.encoder.layer[: self.n_frozen_text_layers],
            self.text.embeddings(input_ids=input_ids),
            mask,
            torch.cat([edited_out, source_out], dim=1),
        )

    def _text_layers(
        self,
        layers: Sequence[nn.Module],
        hidden: torch.Tensor,
        mask: torch.Tensor,
        visual: torch.Tensor,
    ) -> torch.Tensor:
        """Run BLIP text layers (self-attention masked by `mask`, cross-attention to every
        visual token), as BlipTextModel does for its whole stack."""
        self_mask = create_bidirectional_mask(
            config=self.text.config, inputs_embeds=hidden, attention_mask=mask
        )
        for layer in layers:
            hidden = layer(hidden, visual, attention_mask=self_mask)
        return hidden

    def _heads(self, cls_state: torch.Tensor) -> RewardOutput:
        aspects = None
        if self.aspect_heads:
            logits = torch.cat([self.aspect_heads[a](cls_state) for a in self.config.aspects], -1)
            aspects = SCORE_MAX * torch.sigmoid(logits)
        if self.aggregate is not None:
            overall = self.aggregate(aspects).squeeze(-1)
        else:
            # ImageReward.py: score = (mlp(cls) - mean) / std; the identity by default.
            raw = self.overall_head(cls_state).squeeze(-1)
            overall = (raw - self.config.score_mean) / self.config.score_std
        return RewardOutput(overall=overall, aspects=aspects)

    def describe(self) -> str:
        """One line for logs and UIs, which must say when the backbone is random."""
        kind = "tiny random-init model" if self.is_random_init else f"BLIP from {self.config.base}"
        return (
            f"{kind}, head {self.config.heads}, aspects {self.aspects or '-'}, "
            f"{self.n_frozen_vision_layers}/{len(self.vision.encoder.layers)} vision and "
            f"{self.n_frozen_text_layers}/{len(self.text.encoder.layer)} text layers frozen"
        )


def _digest_weights(digest: Any, modules: list[nn.Module]) -> None:
    for index, module in enumerate(modules):
        for name, tensor in module.state_dict().items():
            digest.update(f"{index}.{name}".encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())


def _read_state(directory: Path) -> dict[str, torch.Tensor]:
    if (directory / WEIGHTS_FILE).is_file():
        from safetensors.torch import load_file

        return load_file(str(directory / WEIGHTS_FILE), device="cpu")
    return torch.load(directory / TORCH_WEIGHTS_FILE, map_location="cpu", weights_only=True)
