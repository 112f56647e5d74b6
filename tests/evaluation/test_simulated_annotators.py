"""Simulated annotators: pure functions over procedural truths."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from evaluation.simulated_annotators import SimulatedAnnotator, manifest_records, simulate

TRUTHS = {
    11: {"following": 5.0, "preserving": 4.8, "quality": 5.0},  # good
    12: {"following": 2.0, "preserving": 5.0, "quality": 5.0},  # weak
    13: {"following": 3.3, "preserving": 2.0, "quality": 2.5},  # overdone
    14: {"following": 1.0, "preserving": 3.6, "quality": 4.5},  # wrong operation
}


def test_a_noiseless_annotator_ranks_by_the_truth_and_scores_it_rounded() -> None:
    person = SimulatedAnnotator(noise=0.0, disagreement=0.0, tie_margin=0.0)
    ranking, scores, unsure = simulate(TRUTHS, person, random.Random(0))
    assert ranking == [[11], [12], [14], [13]]
    assert scores[11] == {"following": 5, "preserving": 5, "quality": 5}
    assert scores[13] == {"following": 3, "preserving": 2, "quality": 2}  # 2.5 rounds to even
    assert unsure is False


def test_variants_within_the_margin_share_a_tier() -> None:
    person = SimulatedAnnotator(noise=0.0, disagreement=0.0, tie_margin=0.2)
    truths = {1: {"following": 4.0, "preserving": 4.0, "quality": 4.0}}
    truths[2] = {"following": 4.0, "preserving": 4.0, "quality": 3.7}  # mean 0.1 lower
    truths[3] = {"following": 1.0, "preserving": 1.0, "quality": 1.0}
    ranking, _, _ = simulate(truths, person, random.Random(0))
    assert ranking == [[1, 2], [3]]


def test_scores_stay_on_the_zero_to_five_scale() -> None:
    person = SimulatedAnnotator(noise=3.0, disagreement=1.0, seed=4)
    for seed in range(20):
        _, scores, _ = simulate(TRUTHS, person, random.Random(seed))
        values = [v for given in scores.values() for v in given.values()]
        assert all(isinstance(v, int) and 0 <= v <= 5 for v in values)


def test_a_ranking_names_every_variant_once() -> None:
    person = SimulatedAnnotator(noise=1.0, seed=1)
    ranking, _, _ = simulate(TRUTHS, person, np.random.default_rng(3))
    assert sorted(v for tier in ranking for v in tier) == sorted(TRUTHS)


def test_the_same_seeds_give_the_same_judgement() -> None:
    person = SimulatedAnnotator.sample(random.Random(5), noise=0.8, disagreement=0.5)
    again = SimulatedAnnotator.sample(random.Random(5), noise=0.8, disagreement=0.5)
    assert person.bias == again.bias and person.weights == again.weights
    assert simulate(TRUTHS, person, random.Random(9)) == simulate(TRUTHS, again, random.Random(9))


def test_more_noise_means_less_agreement_with_the_truth() -> None:
    def agreement(noise: float) -> float:
        person = SimulatedAnnotator(noise=noise, disagreement=0.0, tie_margin=0.0)
        rng = random.Random(0)
        return np.mean([simulate(TRUTHS, person, rng)[0][0] == [11] for _ in range(300)])

    assert agreement(0.2) > agreement(1.5) + 0.2


def test_unsure_rate_flags_judgements() -> None:
    person = SimulatedAnnotator(unsure_rate=1.0)
    assert simulate(TRUTHS, person, random.Random(0))[2] is True


def test_it_refuses_negative_noise() -> None:
    with pytest.raises(ValueError, match="noise"):
        SimulatedAnnotator(noise=-1)


def test_manifest_records_split_by_task(tmp_path: Path) -> None:
    from PIL import Image

    lines = []
    for task in range(10):
        Image.new("RGB", (8, 8), (task, 0, 0)).save(tmp_path / f"s{task}.png")
        variants = []
        for v in range(3):
            Image.new("RGB", (8, 8), (task, v, 0)).save(tmp_path / f"v{task}{v}.png")
            truth = {"following": 5 - v, "preserving": 5, "quality": 5}
            variants.append({"image": f"v{task}{v}.png", "params": {"truth": truth}})
        lines.append({"source": f"s{task}.png", "instruction": "x", "variants": variants})
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(line) for line in lines))
    people = [SimulatedAnnotator(seed=s) for s in range(4)]

    records = manifest_records(manifest, people, per_task=3, fractions=(0.6, 0.2))

    assert len(records) == 30
    splits = {r.task_id: r.split for r in records}
    assert sorted(splits.values()).count("train") == 6 and list(splits.values()).count("val") == 2
    for task in splits:  # three distinct annotators per task, one split per task
        judged = [r for r in records if r.task_id == task]
        assert len({r.annotator_id for r in judged}) == 3 and len({r.split for r in judged}) == 1
    assert records[0].variants[100 * records[0].task_id].path.endswith("0.png")
