"""Plain records of human judgements, the pairs and score targets they imply, and a torch
Dataset over them. No Django here: rewards/records.py turns database rows into these.

A judgement ranks the K variants of one task in tiers, best to worst (`[[3], [1, 2], [4]]`:
1 and 2 tied), and scores each variant 0-5 per aspect. Following HIVE (§3.1) and ImageReward
(§3.2), a ranking of K variants becomes every non-tied pair (winner, loser); each pair is
weighted 1 / (pairs of its judgement) so a judgement counts once however many pairs it has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from rewards.config import TIE_MODES

SPLITS = ("train", "val", "test")


class ImageUnreadable(RuntimeError):
    """An image file is missing or corrupt; the message names its path and sha256."""

    def __init__(self, path: str, sha256: str, reason: str) -> None:
        super().__init__(
            f"cannot read image {path} (sha256 {sha256}): {reason}. "
            "Re-import or remove that image."
        )
        self.path, self.sha256 = path, sha256


@dataclass(frozen=True)
class ImageRef:
    """An image file and its content hash (the hash keys the feature cache)."""

    path: str
    sha256: str


@dataclass(frozen=True)
class VariantRef:
    """A variant's image; `JudgementRecord(variants=[VariantRef, ...])` is accepted too."""

    variant_id: int
    path: str
    sha256: str

    @property
    def image(self) -> ImageRef:
        return ImageRef(self.path, self.sha256)


@dataclass
class JudgementRecord:
    judgement_id: int
    task_id: int
    annotator_id: int
    split: str
    instruction: str
    source: ImageRef
    variants: dict[int, ImageRef]  # variant id -> image (a list of VariantRef also works)
    ranking: list[list[int]]  # tiers best -> worst, ties inside a tier
    unsure: bool = False
    scores: dict[int, dict[str, int]] = field(default_factory=dict)  # variant -> aspect -> 0..5

    def __post_init__(self) -> None:
        if isinstance(self.variants, Sequence):
            self.variants = {ref.variant_id: ref.image for ref in self.variants}
        self.variants = {int(k): v for k, v in self.variants.items()}
        self.ranking = [[int(v) for v in tier] for tier in self.ranking]
        self.scores = {int(k): dict(v) for k, v in self.scores.items()}
        ranked = [v for tier in self.ranking for v in tier]
        if sorted(ranked) != sorted(self.variants) or any(not tier for tier in self.ranking):
            raise ValueError(
                f"judgement {self.judgement_id}: ranking {self.ranking} must name every variant "
                f"{sorted(self.variants)} exactly once, in non-empty tiers"
            )

    @property
    def tier_of(self) -> dict[int, int]:
        """Variant id -> tier index (0 = best)."""
        return {v: index for index, tier in enumerate(self.ranking) for v in tier}

    @property
    def variant_ids(self) -> list[int]:
        """Variants in ranked order, best first (ties in the order given)."""
        return [v for tier in self.ranking for v in tier]


@dataclass(frozen=True)
class Pair:
    judgement_id: int
    task_id: int
    winner: int
    loser: int
    target: float  # P(winner preferred): 1.0, or 0.5 for a tie with tie_mode="soft"
    weight: float  # 1 / pairs of this judgement


@dataclass(frozen=True)
class AspectTarget:
    judgement_id: int
    variant_id: int
    aspect: str
    value: float


def usable(records: Iterable[JudgementRecord], include_unsure: bool) -> list[JudgementRecord]:
    """Judgements flagged unsure are left out of training unless asked for."""
    return [r for r in records if include_unsure or not r.unsure]


def judgement_pairs(record: JudgementRecord, tie_mode: str = "skip") -> list[Pair]:
    """The pairs one ranking implies, weighted 1 / (their number)."""
    if tie_mode not in TIE_MODES:
        raise ValueError(f"tie_mode {tie_mode!r} is not one of {TIE_MODES}")
    found: list[tuple[int, int, float]] = []
    for better, worse in combinations(range(len(record.ranking)), 2):
        found += [(w, lo, 1.0) for w in record.ranking[better] for lo in record.ranking[worse]]
    if tie_mode == "soft":  # a tie as a soft 0.5 target (Bradley-Terry with ties as half wins)
        for tier in record.ranking:
            found += [(a, b, 0.5) for a, b in combinations(tier, 2)]
    weight = 1.0 / len(found) if found else 0.0
    return [
        Pair(record.judgement_id, record.task_id, w, lo, target, weight) for w, lo, target in found
    ]


def expand_pairs(
    records: Iterable[JudgementRecord], tie_mode: str = "skip", include_unsure: bool = False
) -> list[Pair]:
    """Every non-tied pair (winner, loser) of each ranking; ties as 0.5 targets if "soft"."""
    return [pair for r in usable(records, include_unsure) for pair in judgement_pairs(r, tie_mode)]


def aspect_targets(
    records: Iterable[JudgementRecord], aspects: Sequence[str], include_unsure: bool = False
) -> list[AspectTarget]:
    """One target per (judgement, variant, aspect) the annotator scored."""
    return [
        AspectTarget(r.judgement_id, variant, aspect, float(values[aspect]))
        for r in usable(records, include_unsure)
        for variant, values in sorted(r.scores.items())
        for aspect in aspects
        if aspect in values
    ]


def load_image(ref: ImageRef) -> Image.Image:
    """Open an image fully (so a truncated file fails here, not later), as RGB."""
    try:
        with Image.open(ref.path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageUnreadable(ref.path, ref.sha256, str(error) or type(error).__name__) from error


class PixelSource:
    """ImageRef -> normalised pixels (3, S, S), with the model's own image processor."""

    def __init__(self, image_processor: Any) -> None:
        self.image_processor = image_processor

    def __call__(self, ref: ImageRef) -> torch.Tensor:
        pixels = self.image_processor(images=[load_image(ref)], return_tensors="pt")
        return pixels["pixel_values"][0]


ImageSource = Callable[[ImageRef], torch.Tensor]
# (instruction, source, edited) -> the cached text prefix (L, H) of a frozen_prefix model
PrefixSource = Callable[[str, ImageRef, ImageRef], torch.Tensor]


@dataclass
class JudgementItem:
    instruction: str
    source: torch.Tensor
    edited: torch.Tensor  # (K, ...) in the order of variant_ids
    variant_ids: list[int]
    pairs: list[tuple[int, int, float, float]]  # (winner index, loser index, target, weight)
    aspect_target: torch.Tensor  # (K, A)
    aspect_mask: torch.Tensor  # (K, A) bool: the annotator gave this score
    prefix: torch.Tensor | None = None  # (K, L, H) cached text prefixes, if any


class JudgementDataset(Dataset):
    """One item per judgement: its K variants are encoded together so each variant is run
    once per judgement and the source once, and the pair weights stay per judgement."""

    def __init__(
        self,
        records: Sequence[JudgementRecord],
        aspects: Sequence[str],
        images: ImageSource,
        tie_mode: str = "skip",
        include_unsure: bool = False,
        prefixes: PrefixSource | None = None,
    ) -> None:
        self.aspects = list(aspects)
        self.images = images
        self.prefixes = prefixes
        self.tie_mode = tie_mode
        self.records = [
            r for r in usable(records, include_unsure) if self._has_targets(r, tie_mode)
        ]

    def _has_targets(self, record: JudgementRecord, tie_mode: str) -> bool:
        scored = self.aspects and any(record.scores.values())
        return bool(judgement_pairs(record, tie_mode) or scored)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> JudgementItem:
        record = self.records[index]
        variant_ids = sorted(record.variants)
        position = {v: i for i, v in enumerate(variant_ids)}
        pairs = [
            (position[p.winner], position[p.loser], p.target, p.weight)
            for p in judgement_pairs(record, self.tie_mode)
        ]
        target = torch.zeros(len(variant_ids), len(self.aspects))
        mask = torch.zeros(len(variant_ids), len(self.aspects), dtype=torch.bool)
        for variant, values in record.scores.items():
            for a, aspect in enumerate(self.aspects):
                if aspect in values and variant in position:
                    target[position[variant], a] = float(values[aspect])
                    mask[position[variant], a] = True
        edited = torch.stack([self.images(record.variants[v]) for v in variant_ids])
        return JudgementItem(
            record.instruction,
            self.images(record.source),
            edited,
            variant_ids,
            pairs,
            target,
            mask,
            self._prefix(record, variant_ids),
        )

    def _prefix(self, record: JudgementRecord, variant_ids: list[int]) -> torch.Tensor | None:
        if self.prefixes is None:
            return None
        refs = [record.variants[v] for v in variant_ids]
        return torch.stack([self.prefixes(record.instruction, record.source, r) for r in refs])


@dataclass
class JudgementBatch:
    input_ids: torch.Tensor  # (G, L), one row per judgement
    attention_mask: torch.Tensor
    source: torch.Tensor  # (G, ...)
    edited: torch.Tensor  # (N, ...)
    group: torch.Tensor  # (N,) judgement row of each edit
    variant_ids: list[int]
    pair_winner: torch.Tensor  # (P,) indices into the N edits
    pair_loser: torch.Tensor
    pair_target: torch.Tensor
    pair_weight: torch.Tensor
    aspect_target: torch.Tensor  # (N, A)
    aspect_mask: torch.Tensor
    prefix: torch.Tensor | None = None  # (N, L, H) cached text prefixes, zero-padded to L

    def to(self, device: torch.device | str) -> JudgementBatch:
        moved = {
            name: value.to(device) if isinstance(value, torch.Tensor) else value
            for name, value in self.__dict__.items()
        }
        return JudgementBatch(**moved)


class JudgementCollator:
    """Stacks judgement items; picklable so DataLoader workers can run it."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, items: list[JudgementItem]) -> JudgementBatch:
        text = self.tokenizer(
            [item.instruction for item in items],
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        offsets, group, pairs = 0, [], []
        for row, item in enumerate(items):
            group += [row] * len(item.variant_ids)
            pairs += [(w + offsets, lo + offsets, t, wt) for w, lo, t, wt in item.pairs]
            offsets += len(item.variant_ids)
        columns = list(zip(*pairs, strict=True)) if pairs else [[], [], [], []]
        return JudgementBatch(
            input_ids=text["input_ids"],
            attention_mask=text["attention_mask"],
            source=torch.stack([item.source for item in items]),
            edited=torch.cat([item.edited for item in items]),
            group=torch.tensor(group, dtype=torch.long),
            variant_ids=[v for item in items for v in item.variant_ids],
            pair_winner=torch.tensor(columns[0], dtype=torch.long),
            pair_loser=torch.tensor(columns[1], dtype=torch.long),
            pair_target=torch.tensor(columns[2], dtype=torch.float32),
            pair_weight=torch.tensor(columns[3], dtype=torch.float32),
            aspect_target=torch.cat([item.aspect_target for item in items]),
            aspect_mask=torch.cat([item.aspect_mask for item in items]),
            prefix=_padded_prefixes(items, text["input_ids"].shape[1]),
        )


def _padded_prefixes(items: list[JudgementItem], length: int) -> torch.Tensor | None:
    """Each judgement's prefixes padded with zeros to the batch's token length (the
    attention mask hides the padding, as it hides the padding tokens)."""
    if items[0].prefix is None:
        return None
    padded = [
        torch.nn.functional.pad(item.prefix, (0, 0, 0, length - item.prefix.shape[1]))
        for item in items
    ]
    return torch.cat(padded)
