"""Records, the pairs and targets they imply, and the Dataset over them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rewards.dataset import (
    ImageRef,
    ImageUnreadable,
    JudgementCollator,
    JudgementDataset,
    JudgementRecord,
    PixelSource,
    VariantRef,
    aspect_targets,
    expand_pairs,
    load_image,
)
from rewards.tiny import build_image_processor, build_tiny_tokenizer
from tests.rewards import ASPECTS, make_records

REF = ImageRef("unused.png", "0" * 64)


def record(
    ranking: list[list[int]], unsure: bool = False, judgement_id: int = 1
) -> JudgementRecord:
    variants = {v: REF for tier in ranking for v in tier}
    return JudgementRecord(
        judgement_id, 7, 3, "train", "make it brighter", REF, variants, ranking, unsure
    )


def test_it_expands_every_non_tied_pair_with_weight_one_over_its_number() -> None:
    pairs = expand_pairs([record([[3], [1, 2], [4]])])
    assert {(p.winner, p.loser) for p in pairs} == {(3, 1), (3, 2), (3, 4), (1, 4), (2, 4)}
    assert all(p.weight == pytest.approx(1 / 5) and p.target == 1.0 for p in pairs)


def test_soft_ties_become_half_targets() -> None:
    pairs = expand_pairs([record([[3], [1, 2]])], tie_mode="soft")
    ties = [p for p in pairs if p.target == 0.5]
    assert [(p.winner, p.loser) for p in ties] == [(1, 2)]
    assert all(p.weight == pytest.approx(1 / 3) for p in pairs)


def test_an_all_tied_ranking_gives_no_pairs() -> None:
    assert expand_pairs([record([[1, 2, 3]])]) == []


def test_unsure_judgements_are_left_out_unless_asked_for() -> None:
    records = [record([[1], [2]], unsure=True)]
    assert expand_pairs(records) == []
    assert len(expand_pairs(records, include_unsure=True)) == 1


def test_it_refuses_an_unknown_tie_mode() -> None:
    with pytest.raises(ValueError, match="tie_mode"):
        expand_pairs([record([[1], [2]])], tie_mode="drop")


def test_a_ranking_must_name_every_variant_once() -> None:
    with pytest.raises(ValueError, match="exactly once"):
        JudgementRecord(1, 1, 1, "train", "x", REF, {1: REF, 2: REF}, [[1], [1]])


def test_variants_may_be_given_as_a_list_of_refs() -> None:
    variants = [VariantRef(5, "a.png", "a" * 64), VariantRef(6, "b.png", "b" * 64)]
    made = JudgementRecord(1, 1, 1, "train", "x", REF, variants, [[6], [5]])
    assert made.variants == {5: ImageRef("a.png", "a" * 64), 6: ImageRef("b.png", "b" * 64)}
    assert made.variant_ids == [6, 5]


def test_aspect_targets_are_one_per_judgement_variant_aspect() -> None:
    made = record([[1], [2]])
    made.scores = {1: {"following": 5, "quality": 0}, 2: {"following": 3}}
    targets = aspect_targets([made], ASPECTS)
    assert [(t.variant_id, t.aspect, t.value) for t in targets] == [
        (1, "following", 5.0),
        (1, "quality", 0.0),
        (2, "following", 3.0),
    ]


def test_a_missing_image_fails_naming_its_path_and_hash(tmp_path: Path) -> None:
    ref = ImageRef(str(tmp_path / "gone.png"), "ab" * 32)
    with pytest.raises(ImageUnreadable, match="gone.png.*sha256 abab"):
        load_image(ref)


def test_a_corrupt_image_fails_naming_its_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ImageUnreadable, match="broken.png"):
        load_image(ImageRef(str(path), "cd" * 32))


def test_items_and_batches_line_pairs_up_with_the_edits(tmp_path: Path) -> None:
    records = make_records(tmp_path, n_tasks=2, variants=3, annotators=1)
    dataset = JudgementDataset(records, ASPECTS, PixelSource(build_image_processor(32)))
    collate = JudgementCollator(build_tiny_tokenizer(), max_length=16)
    batch = collate([dataset[0], dataset[1]])
    assert batch.edited.shape == (6, 3, 32, 32) and batch.source.shape == (2, 3, 32, 32)
    assert batch.group.tolist() == [0, 0, 0, 1, 1, 1]
    assert batch.variant_ids == [0, 1, 2, 100, 101, 102]
    # each task ranks its variants in id order: winner index < loser index, within a task
    pairs = list(zip(batch.pair_winner.tolist(), batch.pair_loser.tolist(), strict=True))
    assert pairs == [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5)]
    assert batch.pair_weight.tolist() == pytest.approx([1 / 3] * 6)
    assert batch.aspect_target[:, 0].tolist() == [5, 4, 3, 5, 4, 3]
    assert bool(batch.aspect_mask.all())
    assert batch.input_ids.shape[0] == 2 and batch.input_ids.dtype == torch.long
