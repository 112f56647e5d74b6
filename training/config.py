"""The fine-tuning configuration: plain dataclasses, no torch, so the web process can
validate a launch request's options without loading the ML stack."""

from __future__ import annotations

from dataclasses import dataclass, fields

METHODS = ("supervised", "weighted", "conditional", "multireward", "dpo")
PRECISIONS = ("no", "bf16")


@dataclass(frozen=True)
class ConditioningDropout:
    """InstructPix2Pix §3.2.1: 5% of examples lose the text, 5% the image, 5% both."""

    text_only: float = 0.05
    image_only: float = 0.05
    both: float = 0.05



@dataclass
class FinetuneConfig:
    method: str = "supervised"
    resolution: int = 32  # pixels per side; the tiny editor's size (256 for Stable Diffusion)
    max_steps: int = 100
    batch_size: int = 4  # per device
    learning_rate: float = 5e-5  # Multi-Reward §6.1; the tiny random editor wants ~1e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    lr_warmup_steps: int = 0
    eta: float = 1.0  # HIVE η: temperature of the reward weights exp(r / η)
    weight_clip: float = 5.0  # largest weight one example gets (the batch mean is 1)
    dpo_beta: float = 2500.0  # Diffusion-DPO β for SD 1.5
    drop_text_prob: float = 0.05  # InstructPix2Pix §3.2.1
    drop_image_prob: float = 0.05
    drop_both_prob: float = 0.05
    ema_decay: float | None = None  # e.g. 0.9999; None: no EMA
    max_grad_norm: float | None = 1.0
    gradient_checkpointing: bool = False
    mixed_precision: str = "no"  # "no" | "bf16" (CUDA only)
    checkpoint_every: int = 500
    keep_last: int = 2
    cycle_augment: bool = False
    multireward_features: int = 32  # sinusoidal features per score
    distributed: bool = False  # several GPUs through `accelerate launch`
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _require(self.method in METHODS, "method", f"must be one of {METHODS}")
        _require(
            self.resolution >= 8 and self.resolution % 8 == 0,
            "resolution",
            "must be a positive multiple of 8",
        )
        for name in ("max_steps", "batch_size", "checkpoint_every", "keep_last"):
            _require(getattr(self, name) >= 1, name, "must be at least 1")
        _require(self.lr_warmup_steps >= 0, "lr_warmup_steps", "must be 0 or more")
        for name in ("learning_rate", "adam_epsilon", "eta", "dpo_beta"):
            _require(getattr(self, name) > 0, name, "must be positive")
        for name in ("adam_beta1", "adam_beta2"):
            _require(0 <= getattr(self, name) < 1, name, "must be within [0, 1)")
        _require(self.adam_weight_decay >= 0, "adam_weight_decay", "must be 0 or more")
        _require(self.weight_clip >= 1, "weight_clip", "must be at least 1 (weights average 1)")
        drops = (self.drop_text_prob, self.drop_image_prob, self.drop_both_prob)
        for name, value in zip(
            ("drop_text_prob", "drop_image_prob", "drop_both_prob"), drops, strict=True
        ):
            _require(0 <= value <= 1, name, "must be within [0, 1]")
        _require(sum(drops) <= 1, "drop_both_prob", "the three dropout shares must sum to ≤ 1")
        _require(self.ema_decay is None or 0 < self.ema_decay < 1, "ema_decay", "must be in (0, 1)")
        _require(
            self.max_grad_norm is None or self.max_grad_norm > 0,
            "max_grad_norm",
            "must be positive or None",
        )
        _require(self.mixed_precision in PRECISIONS, "mixed_precision", f"one of {PRECISIONS}")
        _require(
            not (self.cycle_augment and self.method == "dpo"),
            "cycle_augment",
            "does not apply to method 'dpo' (preference pairs have no reverse)",
        )
        _require(
            self.multireward_features >= 2 and self.multireward_features % 2 == 0,
            "multireward_features",
            "must be an even number ≥ 2",
        )
        _require(self.seed >= 0, "seed", "must be 0 or more")

    @property
    def dropout(self) -> ConditioningDropout:
        return ConditioningDropout(self.drop_text_prob, self.drop_image_prob, self.drop_both_prob)


def _require(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise ValueError(f"{field_name}: {message}")


def option_names() -> set[str]:
    """What a run's ``options`` may set (the method is the run's own field)."""
    return {field.name for field in fields(FinetuneConfig)} - {"method"}


def config_from_options(method: str, options: dict) -> FinetuneConfig:
    """The run's configuration; ValueError naming the first unknown or bad option."""
    unknown = sorted(set(options) - option_names())
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(option_names()))}"
        )
    return FinetuneConfig(method=method, **options)  # __post_init__ validates every field
