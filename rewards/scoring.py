"""Score edits with a reward model: one request's images, or many stored variants in batches.

Like ImageReward's `score(prompt, image)`, but an edit is scored together with its source
photo: `score_images(model, source, [edited, ...], instruction)`.

Device: `device=None` scores where the model already is; a name ("cpu", "cuda", "auto")
moves it there first. On CUDA the forward runs under bf16 autocast and batches default to
256 edits (16 on the CPU, rewards/device.py); scores always leave as float32 Python floats.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from rewards.dataset import ImageRef, JudgementRecord, PixelSource
from rewards.device import Device, autocast_for, resolve_device, scoring_batch_size
from rewards.feature_cache import FeatureCache
from rewards.reward_model import BlipRewardModel, RewardOutput

Score = dict[str, Any]  # {"overall": float, "aspects": {aspect: float}}


@dataclass(frozen=True)
class ScoreItem:
    key: Hashable  # usually the variant id
    instruction: str
    source: ImageRef
    edited: ImageRef


def place(model: BlipRewardModel, device: Device | None) -> torch.device:
    """Move the model to `device` (None: leave it where it is); returns where it is."""
    if device is None:
        return model.device
    target = resolve_device(device)
    if model.device != target:
        model.to(target)
    return target


def _as_scores(model: BlipRewardModel, output: RewardOutput) -> list[Score]:
    # float32 on the CPU whatever the forward ran in (bf16 autocast on CUDA).
    overall = output.overall.float().cpu().tolist()
    aspects = output.aspects.float().cpu().tolist() if output.aspects is not None else None
    return [
        {
            "overall": value,
            "aspects": dict(zip(model.aspects, aspects[i], strict=True)) if aspects else {},
        }
        for i, value in enumerate(overall)
    ]


@torch.no_grad()
def score_images(
    model: BlipRewardModel,
    source: Image.Image,
    edited: Sequence[Image.Image],
    instruction: str,
    device: Device | None = None,
) -> list[Score]:
    """One score per edited image, in order; the source is encoded once."""
    if not edited:
        return []
    where = place(model, device)
    model.eval()
    input_ids, attention_mask = model.tokenize([instruction])
    with autocast_for(where):
        output = model(
            input_ids,
            attention_mask,
            model.preprocess(list(edited)),
            model.preprocess([source]),
            torch.zeros(len(edited), dtype=torch.long),
        )
    return _as_scores(model, output)


def items_from_records(records: Iterable[JudgementRecord]) -> list[ScoreItem]:
    """Each variant of the records once (a variant judged twice is scored once)."""
    items: dict[int, ScoreItem] = {}
    for record in records:
        for variant, image in record.variants.items():
            items.setdefault(variant, ScoreItem(variant, record.instruction, record.source, image))
    return list(items.values())


def _batches(items: list[ScoreItem], size: int) -> list[list[ScoreItem]]:
    # Sorted so a batch holds whole groups (same source and instruction) where it can.
    ordered = sorted(items, key=lambda item: (item.source.sha256, item.instruction, str(item.key)))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def _score_batch(
    model: BlipRewardModel, batch: list[ScoreItem], images: Callable, from_features: bool
) -> list[Score]:
    groups: dict[tuple[str, str], int] = {}
    sources: list[ImageRef] = []
    instructions: list[str] = []
    for item in batch:
        key = (item.source.sha256, item.instruction)
        if key not in groups:
            groups[key] = len(groups)
            sources.append(item.source)
            instructions.append(item.instruction)
    group = torch.tensor([groups[(i.source.sha256, i.instruction)] for i in batch])
    input_ids, attention_mask = model.tokenize(instructions)
    edited = torch.stack([images(item.edited) for item in batch])
    source = torch.stack([images(ref) for ref in sources])
    output = model(input_ids, attention_mask, edited, source, group, from_features=from_features)
    return _as_scores(model, output)


@torch.no_grad()
def score_items(
    model: BlipRewardModel,
    items: Sequence[ScoreItem],
    batch_size: int | None = None,
    cache: FeatureCache | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    device: Device | None = None,
) -> dict[Hashable, Score]:
    """Scores keyed by item key. With a cache, frozen features are read (or stored) there.
    batch_size None: sized for the device (rewards/device.py)."""
    where = place(model, device)
    size = scoring_batch_size(where, batch_size)
    model.eval()
    items = list(items)
    if cache is not None and model.has_frozen_vision:
        # Outside autocast: cache entries are the fp32 frozen output whichever device wrote them.
        cache.ensure(model, [ref for i in items for ref in (i.source, i.edited)], batch_size=size)
        images, from_features = cache.source(model), True
    else:
        images, from_features = PixelSource(model.image_processor), False
    scores: dict[Hashable, Score] = {}
    for batch in _batches(items, size):
        with autocast_for(where):
            batch_scores = _score_batch(model, batch, images, from_features)
        for item, score in zip(batch, batch_scores, strict=True):
            scores[item.key] = score
        if on_progress:
            on_progress(len(scores), len(items))
    return scores


def score_judgement_variants(
    model: BlipRewardModel,
    records: Iterable[JudgementRecord],
    batch_size: int | None = None,
    cache: FeatureCache | None = None,
    device: Device | None = None,
) -> dict[int, Score]:
    """Scores of every variant the records mention: the input evaluation/metrics.py takes."""
    items = items_from_records(records)
    return score_items(model, items, batch_size, cache, device=device)  # type: ignore[return-value]


# The name the issue uses for the batched scorer.
score_records = score_items
