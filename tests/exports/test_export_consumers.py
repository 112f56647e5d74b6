"""Exports read by the field's own training code, step for step (our code, their steps):

- diffusers ``examples/research_projects/diffusion_dpo/train_diffusion_dpo.py``: its
  ``load_dataset(args.dataset_name, split=...)`` on the unzipped folder, then its
  ``preprocess_train`` (``Image.open(io.BytesIO(cell))`` on jpg_0 / jpg_1, the pair swapped
  when ``label_0 == 0`` so the preferred image comes first, ``caption`` tokenised);
- ImageReward ``train/src/rank_pair_dataset.py`` (``make_dataset.py``): ``json.load`` of
  ``<data_base>/<split>.json`` for train / valid / test, images opened from
  ``os.path.join(image_base, generation)``, a pair per two generations whose ``ranking``
  differ (smaller = better), none for a tie;
- TIGER-Lab EditReward ``dataset/pairwise_edit_dataset.py``: ``json.load`` of
  ``train.json``, samples without existing ``path_src`` / ``path1`` / ``path2`` dropped,
  ``prompt``, the last ``model1_dim*_score`` / ``model2_dim*_score`` key and
  ``model<n>_overall*_score``, label 1 (path1 preferred).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from annotation.models import Judgement, Variant
from tests.exports.test_exporters import (
    EPSILON,
    MODEL_SCORES,
    export,
    file_bytes,
    judge_project,
    model_labelled_project,
    tier_of,
)


@pytest.fixture
def judged(project, annotator, other_annotator):
    return judge_project(project, annotator, other_annotator)


@pytest.fixture
def labelled(project, annotator, other_annotator, tmp_path):
    return model_labelled_project(project, annotator, other_annotator, tmp_path / "more")


def pixels(image: PILImage.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def stored_pixels(variant_id: int) -> np.ndarray:
    return pixels(PILImage.open(io.BytesIO(file_bytes(Variant.objects.get(pk=variant_id)))))


def unzip(archive, folder: Path) -> Path:
    archive.extractall(folder)
    return folder


# --- diffusers Diffusion-DPO --------------------------------------------------------------


def diffusion_dpo_preprocess(examples: dict) -> dict:
    """train_diffusion_dpo.py's preprocess_train, with numpy for its torchvision transforms:
    both images opened from bytes, stacked on the channel axis, preferred one first."""
    opened = [
        [pixels(PILImage.open(io.BytesIO(cell))) for cell in examples[column]]
        for column in ("jpg_0", "jpg_1")
    ]
    combined = []
    for pair, label_0 in zip(zip(*opened, strict=True), examples["label_0"], strict=True):
        if label_0 == 0:
            pair = pair[::-1]
        combined.append(np.concatenate(pair, axis=-1))
    examples["pixel_values"] = combined
    examples["captions"] = list(examples["caption"])  # what tokenize_captions reads
    return examples


def test_dpo_parquet_is_read_by_the_diffusion_dpo_script_steps(judged, tmp_path):
    import datasets

    _, archive = export(judged, kind="dpo", format="parquet", images="embed",
                        include_ties=False)
    folder = unzip(archive, tmp_path / "dpo")

    # --dataset_name <folder> --dataset_split_name train
    train = datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "c"))
    train = train.with_transform(diffusion_dpo_preprocess)

    assert len(train) > 0
    for example in train:
        judgement = Judgement.objects.get(pk=example["ranking_id"])
        tier = tier_of(judgement.ranking)
        first, second = example["variant_0_id"], example["variant_1_id"]
        preferred, other = (first, second) if tier[first] < tier[second] else (second, first)
        assert example["label_0"] == (1.0 if preferred == first else 0.0)
        stacked = example["pixel_values"]
        assert stacked.shape == (24, 32, 6)
        assert (stacked[..., :3] == stored_pixels(preferred)).all()
        assert (stacked[..., 3:] == stored_pixels(other)).all()
        assert example["captions"] == judgement.assignment.task.instruction
    # and as the issue tried it: load_dataset("parquet", data_files=...)
    loaded = datasets.load_dataset(
        "parquet", data_files={"train": str(folder / "train.parquet")},
        cache_dir=str(tmp_path / "c2"),
    )["train"]
    assert isinstance(loaded[0]["jpg_0"], bytes)
    PILImage.open(io.BytesIO(loaded[0]["jpg_0"])).convert("RGB")


def test_model_labelled_dpo_rows_are_read_the_same_way(labelled, tmp_path):
    import datasets

    project, _, _, unjudged = labelled
    _, archive = export(project, kind="dpo", format="parquet", images="embed",
                        labels="model", include_ties=False)
    folder = unzip(archive, tmp_path / "dpo")
    train = datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "c"))
    train = train.with_transform(diffusion_dpo_preprocess)

    ids = sorted(unjudged[0].variants.values_list("id", flat=True))
    overall = dict(zip(ids, MODEL_SCORES[0], strict=True))
    assert len(train) == 5  # task 3 is the train split; its a-b tie is left out
    for example in train:
        first, second = example["variant_0_id"], example["variant_1_id"]
        preferred = first if overall[first] > overall[second] else second
        assert (example["pixel_values"][..., :3] == stored_pixels(preferred)).all()
        assert example["label_source"] == "model"


# --- ImageReward ----------------------------------------------------------------------------


def imagereward_pairs(data_base: Path, image_base: Path, split: str) -> list[dict]:
    """rank_pair_dataset.make_data over <data_base>/<split>.json, without the tensors."""
    with open(data_base / f"{split}.json") as handle:
        data = json.load(handle)
    pairs = []
    for item in data:
        images = [PILImage.open(os.path.join(image_base, g)) for g in item["generations"]]
        prompt = item["prompt"]
        labels = item["ranking"]
        for left in range(len(labels)):
            for right in range(left + 1, len(labels)):
                if labels[left] < labels[right]:
                    better, worse = left, right
                elif labels[left] > labels[right]:
                    better, worse = right, left
                else:
                    continue
                pairs.append({"prompt": prompt, "better": images[better],
                              "worse": images[worse], "item": item,
                              "better_id": item["variant_ids"][better],
                              "worse_id": item["variant_ids"][worse]})
    return pairs


def test_rankings_in_imagereward_layout_are_read_by_its_rank_pair_dataset(judged, tmp_path):
    run, archive = export(judged, kind="rankings", layout="imagereward")
    folder = unzip(archive, tmp_path / "ir")

    assert sorted(f["path"] for f in run.manifest["files"]) == [
        "dataset/test.json", "dataset/train.json", "dataset/valid.json"]
    got = set()
    for split in ("train", "valid", "test"):  # make_dataset.py's three
        for pair in imagereward_pairs(folder / "dataset", folder / "images", split):
            judgement = Judgement.objects.select_related("assignment__task").get(
                pk=pair["item"]["id"])
            assert pair["prompt"] == judgement.assignment.task.instruction
            assert pixels(pair["better"]).tolist() == stored_pixels(pair["better_id"]).tolist()
            assert pair["item"]["split"] == {"valid": "val"}.get(split, split)
            got.add((judgement.pk, pair["better_id"], pair["worse_id"]))
    expected = set()
    for judgement in Judgement.objects.all():
        tier = tier_of(judgement.ranking)
        expected |= {(judgement.pk, a, b) for a in tier for b in tier if tier[a] < tier[b]}
    assert got == expected  # every non-tied pair, no tied one


def test_model_rankings_in_imagereward_layout_skip_the_models_ties(labelled, tmp_path):
    project, _, _, unjudged = labelled
    _, archive = export(project, kind="rankings", layout="imagereward", labels="both")
    folder = unzip(archive, tmp_path / "ir")

    pairs = imagereward_pairs(folder / "dataset", folder / "images", "train")
    model = [p for p in pairs if p["item"]["label_source"] == "model"]
    ids = sorted(unjudged[0].variants.values_list("id", flat=True))
    # task 3 ranked [1, 1, 2, 3]: a-b tied, five pairs
    assert {(p["better_id"], p["worse_id"]) for p in model} == {
        (ids[0], ids[2]), (ids[0], ids[3]), (ids[1], ids[2]), (ids[1], ids[3]),
        (ids[2], ids[3])}
    assert all(p["item"]["reward_version"] == 2 for p in model)
    source = os.path.join(folder / "images", model[0]["item"]["source"])
    assert Path(source).read_bytes() == file_bytes(unjudged[0].source)


# --- EditReward ----------------------------------------------------------------------------


def editreward_samples(json_file: Path) -> list[dict]:
    """PairwiseEditOriginalDataset(json_list=[json_file]).get_single_item for every index,
    without the retry loop; paths are opened as given (relative to the working folder)."""
    with open(json_file) as handle:
        samples = json.load(handle)
    read = []
    for sample in samples:
        image_src, image_1, image_2 = sample.get("path_src"), sample.get("path1"), sample.get(
            "path2")
        if not (image_src and image_1 and image_2):
            continue
        if not (os.path.exists(image_src) and os.path.exists(image_1)
                and os.path.exists(image_2)):
            continue
        a_scores = b_scores = a_overall = b_overall = None
        for key, value in sample.items():
            if key.startswith("model1_dim") and key.endswith("_score") and value is not None:
                a_scores = value
            elif key.startswith("model2_dim") and key.endswith("_score") and value is not None:
                b_scores = value
        for key, value in sample.items():
            if key.startswith("model1_overall") and key.endswith("_score") and value is not None:
                a_overall = value
            elif key.startswith("model2_overall") and key.endswith("_score") and value is not None:
                b_overall = value
        read.append({"image_src": image_src, "image_1": image_1, "image_2": image_2,
                     "text_1": sample.get("prompt", ""), "label": 1.0,
                     "confidence": sample.get("confidence", 1.0), "A_scores": a_scores,
                     "B_scores": b_scores, "A_scores_overall": a_overall,
                     "B_scores_overall": b_overall, "sample": sample})
    return read


def test_pairs_in_editreward_layout_are_read_by_its_pairwise_dataset(
    judged, tmp_path, monkeypatch
):
    run, archive = export(judged, kind="pairs", layout="editreward")
    folder = unzip(archive, tmp_path / "er")
    monkeypatch.chdir(folder)

    read = [s for split in ("train", "val", "test")
            for s in editreward_samples(Path(f"{split}.json"))]
    assert len(read) == run.rows_written == 5 + 6 + 5 + 6 + 6 + 5
    for item in read:
        sample = item["sample"]
        judgement = Judgement.objects.select_related("assignment__task").get(
            pk=sample["judgement_id"])
        tier = tier_of(judgement.ranking)
        assert tier[sample["variant1_id"]] < tier[sample["variant2_id"]]  # path1 preferred
        assert Path(item["image_1"]).read_bytes() == file_bytes(
            Variant.objects.get(pk=sample["variant1_id"]))
        assert Path(item["image_src"]).read_bytes() == file_bytes(judgement.assignment.task.source)
        assert item["text_1"] == judgement.assignment.task.instruction
        scores = judgement.scores[str(sample["variant1_id"])]
        # dim1 = following, dim2 = quality (the last dim key: what the dataset keeps)
        assert sample["model1_dim1_score"] == scores["following"]
        assert item["A_scores"] == scores["quality"]
        assert item["A_scores_overall"] == scores["following"] + scores["quality"]
        assert item["B_scores"] == judgement.scores[str(sample["variant2_id"])]["quality"]
        assert sample["model1_preserving_score"] == scores["preserving"]
        assert sample["tie_case"] is False
        assert sample["model1"] == Variant.objects.get(pk=sample["variant1_id"]).generator


def test_editreward_ties_come_only_when_asked_and_say_so(judged, tmp_path, monkeypatch):
    run, archive = export(judged, kind="pairs", layout="editreward", include_ties=True)
    monkeypatch.chdir(unzip(archive, tmp_path / "er"))

    read = [s["sample"] for split in ("train", "val", "test")
            for s in editreward_samples(Path(f"{split}.json"))]
    ties = [s for s in read if s["tie_case"]]
    assert len(ties) == 6 * 6 - (5 + 6 + 5 + 6 + 6 + 5)
    for sample in ties:
        tier = tier_of(Judgement.objects.get(pk=sample["judgement_id"]).ranking)
        assert tier[sample["variant1_id"]] == tier[sample["variant2_id"]]
        assert sample["variant1_id"] < sample["variant2_id"]
    assert run.options["include_ties"] is True


def test_model_labelled_pairs_in_editreward_layout_carry_the_models_scores(
    labelled, tmp_path, monkeypatch
):
    project, _, _, unjudged = labelled
    _, archive = export(project, kind="pairs", layout="editreward", labels="model")
    monkeypatch.chdir(unzip(archive, tmp_path / "er"))

    read = editreward_samples(Path("test.json"))  # task 4 is the test split
    ids = sorted(unjudged[1].variants.values_list("id", flat=True))
    overall = dict(zip(ids, MODEL_SCORES[1], strict=True))
    assert len(read) == 5  # b-c tied
    for item in read:
        sample = item["sample"]
        assert overall[sample["variant1_id"]] - overall[sample["variant2_id"]] > EPSILON
        n = ids.index(sample["variant1_id"])  # score_variants: following 4 - n, quality 1 + n/2
        assert sample["model1_dim1_score"] == 4.0 - n and item["A_scores"] == 1.0 + n / 2
        assert sample["label_source"] == "model" and sample["judgement_id"] is None
        assert sample["tie_case"] is False
