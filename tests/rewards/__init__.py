"""Helpers shared by the reward-model tests: small synthetic judgement records on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from rewards.dataset import ImageRef, JudgementRecord

ASPECTS = ("following", "preserving", "quality")


def write_image(path: Path, array: np.ndarray) -> ImageRef:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8), "RGB").save(path)
    return ImageRef(str(path), hashlib.sha256(path.read_bytes()).hexdigest())


def make_records(
    directory: Path,
    n_tasks: int = 6,
    variants: int = 3,
    annotators: int = 2,
    size: int = 40,
    seed: int = 0,
    split: str = "train",
    first_task: int = 0,
) -> list[JudgementRecord]:
    """Tasks of `variants` edits (brightened source photos), judged by `annotators` each:
    the less-brightened edit ranks higher; scores follow the same order."""
    rng = np.random.default_rng(seed)
    records: list[JudgementRecord] = []
    for task in range(first_task, first_task + n_tasks):
        photo = rng.integers(0, 200, size=(size, size, 3))
        source = write_image(directory / f"t{task}_source.png", photo)
        refs = {
            100 * task + v: write_image(
                directory / f"t{task}_v{v}.png", np.clip(photo + 25 * (v + 1), 0, 255)
            )
            for v in range(variants)
        }
        ranking = [[variant] for variant in sorted(refs)]  # least change first
        scores = {
            variant: {aspect: max(0, 5 - rank) for aspect in ASPECTS}
            for rank, variant in enumerate(sorted(refs))
        }
        for annotator in range(annotators):
            records.append(
                JudgementRecord(
                    judgement_id=1000 * task + annotator,
                    task_id=task,
                    annotator_id=annotator,
                    split=split,
                    instruction="make it brighter",
                    source=source,
                    variants=refs,
                    ranking=ranking,
                    scores=scores,
                )
            )
    return records
