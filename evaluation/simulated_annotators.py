"""Simulated annotators for the procedural demo edits (pure functions, no Django).

Every variant made by training/procedural.py carries its true aspect scores in
`params["truth"]` (0-5 each for following / preserving / quality). A simulated annotator
sees each aspect as truth + its own lasting bias + fresh per-judgement noise, scores the
rounded, clipped value, and ranks the variants by its own weighted mean of the noisy
aspects; variants within `tie_margin` of a tier's best share that tier. Two sources of
disagreement, as between real annotators (Multi-Reward §3 reports per-aspect agreement):
- noise: a fresh N(0, noise) per variant, aspect and judgement (attention, mood);
- disagreement: the spread of the lasting per-aspect bias and of how much each person
  weighs each aspect in their overall preference (taste).
evaluation/simulated_judgements.py submits the result through the real judgement code path.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from rewards.dataset import ImageRef, JudgementRecord

ASPECTS = ("following", "preserving", "quality")
SCORE_MIN, SCORE_MAX = 0, 5

Ranking = list[list[int]]
Scores = dict[int, dict[str, int]]


class RandomLike(Protocol):
    def random(self) -> float: ...


@dataclass
class SimulatedAnnotator:
    noise: float = 0.6  # std of the per-judgement noise on each aspect, in score points
    seed: int = 0
    disagreement: float = 0.4  # std of the lasting bias and of the log aspect weights
    tie_margin: float = 0.2  # overall points within which variants share a tier
    unsure_rate: float = 0.0  # chance a judgement is flagged unsure
    aspects: Sequence[str] = ASPECTS
    bias: dict[str, float] = field(init=False)
    weights: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        if self.noise < 0 or self.disagreement < 0 or self.tie_margin < 0:
            raise ValueError("noise, disagreement and tie_margin must be >= 0")
        person = np.random.default_rng(self.seed)
        self.bias = {a: float(person.normal(0, self.disagreement)) for a in self.aspects}
        raw = {a: math.exp(person.normal(0, self.disagreement)) for a in self.aspects}
        total = sum(raw.values())
        self.weights = {a: w / total for a, w in raw.items()}

    @classmethod
    def sample(
        cls, rng: random.Random | np.random.Generator, **options: float
    ) -> SimulatedAnnotator:
        """A new person whose bias and taste come from `rng`."""
        seed = (
            int(rng.integers(2**31))
            if isinstance(rng, np.random.Generator)
            else rng.randrange(2**31)
        )
        return cls(seed=seed, **options)


def _gauss(rng: random.Random | np.random.Generator, std: float) -> float:
    if isinstance(rng, np.random.Generator):
        return float(rng.normal(0.0, std))
    return rng.gauss(0.0, std)


def _tiers(overall: Mapping[int, float], margin: float) -> Ranking:
    """Best first; a variant joins the current tier if within `margin` of the tier's best."""
    ordered = sorted(overall, key=lambda v: (-overall[v], v))
    tiers: Ranking = []
    for variant in ordered:
        if tiers and overall[tiers[-1][0]] - overall[variant] <= margin:
            tiers[-1].append(variant)
        else:
            tiers.append([variant])
    return tiers


def simulate(
    truths: Mapping[int, Mapping[str, float]],
    annotator: SimulatedAnnotator,
    rng: random.Random | np.random.Generator,
) -> tuple[Ranking, Scores, bool]:
    """One judgement of these variants: (ranking tiers, integer scores, unsure flag)."""
    noisy = {
        variant: {
            a: float(truth[a]) + annotator.bias[a] + _gauss(rng, annotator.noise)
            for a in annotator.aspects
        }
        for variant, truth in sorted(truths.items())
    }
    scores = {
        variant: {a: int(min(SCORE_MAX, max(SCORE_MIN, round(x)))) for a, x in seen.items()}
        for variant, seen in noisy.items()
    }
    overall = {
        variant: sum(annotator.weights[a] * x for a, x in seen.items())
        for variant, seen in noisy.items()
    }
    unsure = rng.random() < annotator.unsure_rate
    return _tiers(overall, annotator.tie_margin), scores, unsure


# --- offline judgements over a procedural manifest (tests, benchmarks, notebooks) -----------


def _file_ref(path: Path) -> ImageRef:
    return ImageRef(str(path), hashlib.sha256(path.read_bytes()).hexdigest())


def _task_split(index: int, n_tasks: int, fractions: tuple[float, float]) -> str:
    train_end = round(fractions[0] * n_tasks)
    val_end = train_end + round(fractions[1] * n_tasks)
    return "train" if index < train_end else "val" if index < val_end else "test"


def manifest_records(
    manifest: str | Path,
    annotators: Sequence[SimulatedAnnotator],
    per_task: int = 3,
    seed: int = 0,
    fractions: tuple[float, float] = (0.7, 0.15),
) -> list[JudgementRecord]:
    """Simulated judgements of a `build_demo_manifest` import, without a database.

    Tasks are shuffled (seeded) and split train/val/test by task (`fractions` = train, val);
    `per_task` distinct annotators judge each task. Ids are positions: task i, variant
    100 * i + j, judgement in order of creation; annotator ids index `annotators`.
    """
    manifest = Path(manifest)
    lines = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    order = list(range(len(lines)))
    rng.shuffle(order)
    records: list[JudgementRecord] = []
    for position, task_id in enumerate(order):
        task = lines[task_id]
        source = _file_ref(manifest.parent / task["source"])
        variants = {
            100 * task_id + j: _file_ref(manifest.parent / v["image"])
            for j, v in enumerate(task["variants"])
        }
        truths = {100 * task_id + j: v["params"]["truth"] for j, v in enumerate(task["variants"])}
        split = _task_split(position, len(lines), fractions)
        for annotator_id in rng.sample(range(len(annotators)), per_task):
            ranking, scores, unsure = simulate(truths, annotators[annotator_id], rng)
            records.append(
                JudgementRecord(
                    judgement_id=len(records) + 1,
                    task_id=task_id,
                    annotator_id=annotator_id,
                    split=split,
                    instruction=task["instruction"],
                    source=source,
                    variants=variants,
                    ranking=ranking,
                    unsure=unsure,
                    scores=scores,
                )
            )
    return records


def split_by_photo(
    manifest: str | Path,
    records: list[JudgementRecord],
    seed: int,
    test_photos: int = 1,
    val_photos: int = 1,
) -> dict[str, list[JudgementRecord]]:
    """Re-split `manifest_records` output by source photo, as the application splits tasks
    (one photo never sits in two splits): a seeded choice of `test_photos` photos' tasks is
    the test set, `val_photos` others' the val set, the other photos' tasks the training
    set. Sets each record's `split`; returns the records by split."""
    lines = Path(manifest).read_text().splitlines()
    sources = [json.loads(line)["source"] for line in lines if line.strip()]
    photos = sorted(set(sources))
    random.Random(seed).shuffle(photos)
    split_of = {photo: "test" for photo in photos[:test_photos]}
    split_of |= {photo: "val" for photo in photos[test_photos : test_photos + val_photos]}
    by_split: dict[str, list[JudgementRecord]] = {"train": [], "val": [], "test": []}
    for record in records:
        record.split = split_of.get(sources[record.task_id], "train")
        by_split[record.split].append(record)
    return by_split
