"""Options of a reward model and of its training, torch-free.

The web server and beat check the options of a retrain request (rewards/api.py,
rewards/scheduling.py, the project's defaults) without loading torch, so the dataclasses
and their validation live here; rewards/reward_model.py and rewards/trainer.py use them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

DEFAULT_ASPECTS = ("following", "preserving", "quality")
HEAD_MODES = ("coarse", "fine", "cbm")
FUSIONS = ("diff", "late")
# What the change tokens compare (fusion="diff"): the frozen vision output, and the patch
# embeddings too.
CHANGE_FEATURES = ("frozen+patch", "frozen")
FUSION_AT = ("trainable", "every")
# short: one hidden layer (head_hidden); imagereward: ImageReward's MLP, set by an ImageReward base
OVERALL_HEADS = ("short", "imagereward")
IMAGEREWARD_HEAD_WIDTHS = (1024, 128, 64, 16)  # ImageReward/ImageReward.py, class MLP
TINY = "tiny"
TIE_MODES = ("skip", "soft")
ASPECT_LOSSES = ("mse", "ordinal")
SELECT_METRICS = ("pairwise_accuracy", "loss")
# What a retrain request may set about the model itself (base and heads have their own
# fields; aspects come from the project).
MODEL_OPTIONS = (
    "fusion", "change_features", "freeze_fraction", "text_freeze_fraction", "frozen_prefix",
    "head_hidden", "head_dropout",
)  # fmt: skip
# What a retrain request may set about the run itself: where its weights start (WarmStart).
RUN_OPTIONS = ("warm_start", "warm_epochs")
WARM_FRACTION_DIVISOR = 3  # a warm-started run trains a third of the epochs by default


@dataclass
class RewardModelConfig:
    """Everything needed to rebuild the model; saved as JSON next to the weights."""

    base: str = TINY  # "tiny" or the local BLIP directory the weights came from
    aspects: list[str] = field(default_factory=lambda: list(DEFAULT_ASPECTS))
    heads: str = "fine"  # coarse | fine | cbm
    fusion: str = "diff"  # diff: edit + source + change tokens; late: edit + source only
    change_features: str = "frozen+patch"  # frozen+patch | frozen (see CHANGE_FEATURES)
    # Where the fused tokens (segment embeddings, change tokens) enter the text encoder:
    # "trainable" = at its first trainable layer, the frozen layers below reading plain ViT
    # tokens of the edit and its source as pretrained BLIP layers were trained to (and as
    # frozen_prefix needs); "every" = at every layer (models saved in format 1).
    fusion_at: str = "trainable"
    freeze_fraction: float = 0.7  # ImageReward §4.1 fixes 70% of the layers
    text_freeze_fraction: float | None = None  # None: the same as freeze_fraction
    # Fusion parameters enter at the first trainable text layer, so the text prefix below it
    # can be cached; needs freeze_fraction=1 and some text layers frozen (see module doc).
    frozen_prefix: bool = False
    max_text_length: int = 35  # ImageReward's prompt length
    head_hidden: int = 128
    head_dropout: float = 0.1
    # The overall head's shape, and the normalisation of its output: overall =
    # (head(cls) - score_mean) / score_std. An ImageReward base (rewards/imagereward.py)
    # sets all three from its checkpoint (ImageReward.py: (rewards - mean) / std); other
    # bases keep the defaults, under which the overall score is the head's output.
    overall_head: str = "short"
    overall_head_widths: list[int] = field(default_factory=lambda: list(IMAGEREWARD_HEAD_WIDTHS))
    score_mean: float = 0.0
    score_std: float = 1.0
    seed: int = 0
    blip_config: dict[str, Any] = field(default_factory=dict)  # filled from the base

    def __post_init__(self) -> None:
        self.base = str(self.base)
        if self.heads not in HEAD_MODES:
            raise ValueError(f"heads {self.heads!r} is not one of {HEAD_MODES}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion {self.fusion!r} is not one of {FUSIONS}")
        if self.fusion_at not in FUSION_AT:
            raise ValueError(f"fusion_at {self.fusion_at!r} is not one of {FUSION_AT}")
        if self.frozen_prefix and self.fusion_at != "trainable":
            raise ValueError("frozen_prefix needs fusion_at='trainable'")
        if self.change_features not in CHANGE_FEATURES:
            raise ValueError(
                f"change_features {self.change_features!r} is not one of {CHANGE_FEATURES}"
            )
        for name in ("freeze_fraction", "text_freeze_fraction"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} {value} is not in [0, 1]")
        if self.frozen_prefix and self.freeze_fraction != 1.0:
            raise ValueError(
                f"frozen_prefix needs the whole vision tower frozen (freeze_fraction=1), "
                f"not freeze_fraction={self.freeze_fraction}"
            )
        if self.overall_head not in OVERALL_HEADS:
            raise ValueError(f"overall_head {self.overall_head!r} is not one of {OVERALL_HEADS}")
        widths = list(self.overall_head_widths)
        if len(widths) != len(IMAGEREWARD_HEAD_WIDTHS) or min(widths) < 1:
            raise ValueError(
                f"overall_head_widths {widths} must be {len(IMAGEREWARD_HEAD_WIDTHS)} positive "
                f"widths, as ImageReward's MLP {list(IMAGEREWARD_HEAD_WIDTHS)}"
            )
        self.overall_head_widths = widths
        if not self.score_std > 0:
            raise ValueError(f"score_std {self.score_std} must be > 0")
        if self.heads != "coarse" and not self.aspects:
            raise ValueError(f"heads {self.heads!r} needs at least one aspect")
        self.aspects = list(self.aspects)


@dataclass
class TrainConfig:
    lr: float | None = None  # None: 1e-5 on a pretrained BLIP, 1e-3 on the tiny model
    weight_decay: float = 0.01
    epochs: int = 10
    max_steps: int | None = None  # overrides epochs when set
    batch_size: int = 8  # judgements per step
    warmup: float = 0.05  # fraction of the steps spent warming up
    grad_clip: float = 1.0
    bt_weight: float = 1.0
    aspect_weight: float = 0.1  # aspect MSE is on a 0-5 scale: keep it from drowning BT
    aspect_loss: str = "mse"  # mse | ordinal
    tie_mode: str = "skip"  # skip | soft (ties as 0.5 targets)
    include_unsure: bool = False
    seed: int = 0
    patience: int | None = 5  # evaluations without improvement before stopping; None: never
    select_metric: str = "pairwise_accuracy"  # or "loss": what early stopping watches on val
    eval_every: int | None = None  # steps between evaluations; None: once per epoch
    log_every: int = 10  # steps between progress reports / history rows
    keep_checkpoints: int = 2
    device: str = "auto"  # auto | cpu | cuda | cuda:1 ...
    amp: bool = True  # bf16 autocast, on CUDA only
    num_workers: int = 0

    def validate(self) -> TrainConfig:
        checks = [
            (self.lr is None or self.lr > 0, "lr must be > 0"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (0 <= self.warmup < 1, "warmup is a fraction of the steps, in [0, 1)"),
            (self.grad_clip > 0, "grad_clip must be > 0"),
            (self.bt_weight >= 0 and self.aspect_weight >= 0, "loss weights must be >= 0"),
            (self.aspect_loss in ASPECT_LOSSES, f"aspect_loss must be one of {ASPECT_LOSSES}"),
            (self.tie_mode in TIE_MODES, f"tie_mode must be one of {TIE_MODES}"),
            (self.patience is None or self.patience >= 1, "patience must be >= 1 or null"),
            (
                self.select_metric in SELECT_METRICS,
                f"select_metric must be one of {SELECT_METRICS}",
            ),
            (self.eval_every is None or self.eval_every >= 1, "eval_every must be >= 1"),
            (self.log_every >= 1 and self.keep_checkpoints >= 1, "log_every/keep_checkpoints >= 1"),
            (self.num_workers >= 0, "num_workers must be >= 0"),
        ]
        errors = [message for ok, message in checks if not ok]
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class WarmStart:
    """Where a retrain's weights start (rewards/runs.py): from the active version's, when
    `warm_start` is on and its architecture matches, for fewer epochs (`warm_epochs`, by
    default a third of `epochs`, rounded up); otherwise from the base."""

    warm_start: bool = False
    warm_epochs: int | None = None

    def __post_init__(self) -> None:
        # JSON booleans only: "false" is a non-empty string, and would mean on.
        if not isinstance(self.warm_start, bool):
            raise ValueError(f"warm_start must be true or false, not {self.warm_start!r}")
        epochs = self.warm_epochs
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)):
            raise ValueError(f"warm_epochs must be a whole number or null, not {epochs!r}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"warm_epochs must be >= 1, not {epochs}")

    def training(self, config: TrainConfig) -> TrainConfig:
        """The shorter schedule of a warm-started run: the model already ranks the old
        judgements, so it needs only to take in the new ones. `warm_epochs` replaces both
        epochs and max_steps; without it, each is cut to a third (rounded up, at least 1)."""
        if self.warm_epochs is not None:
            return replace(config, epochs=self.warm_epochs, max_steps=None)
        steps = config.max_steps
        return replace(
            config,
            epochs=_a_third(config.epochs),
            max_steps=None if steps is None else _a_third(steps),
        )


def _a_third(count: int) -> int:
    return max(1, math.ceil(count / WARM_FRACTION_DIVISOR))


def option_names() -> set[str]:
    """Every key a retrain request's `options` may hold."""
    return set(MODEL_OPTIONS) | set(RUN_OPTIONS) | {f.name for f in fields(TrainConfig)}


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model options, training options) of a retrain request, both checked; ValueError
    names whatever is unknown or invalid."""
    unknown = sorted(set(options) - option_names())
    if unknown:
        known = ", ".join(sorted(option_names()))
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; known: {known}")
    model = {k: v for k, v in options.items() if k in MODEL_OPTIONS}
    training = {k: v for k, v in options.items() if k not in (*MODEL_OPTIONS, *RUN_OPTIONS)}
    try:
        RewardModelConfig(**model)
        TrainConfig(**training).validate()
        warm_start_options(options)
    except TypeError as error:  # a value of the wrong type, e.g. "0.7" for a number
        raise ValueError(f"an option has the wrong type: {error}") from None
    return model, training


def warm_start_options(options: dict[str, Any]) -> WarmStart:
    """The run's own options (`RUN_OPTIONS`) of a retrain request, checked."""
    return WarmStart(**{k: v for k, v in options.items() if k in RUN_OPTIONS})
