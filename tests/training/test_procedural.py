import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.procedural import (
    ASPECTS,
    CATEGORIES,
    DEMO_PHOTOS,
    OPERATIONS,
    RECIPES,
    EditRecipe,
    ProceduralVariant,
    build_demo_manifest,
    downscale,
    load_photo,
    make_variants,
)

CAT = next(photo for photo in DEMO_PHOTOS if photo.name == "cat")


@pytest.fixture(scope="module")
def small_photo() -> Image.Image:
    # Operations scale with the image, so a thumbnail exercises them in a fraction of the time.
    return downscale(load_photo(CAT), 160)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("demo")
    build_demo_manifest(out_dir, seed=0)
    return out_dir


def _read_manifest(out_dir: Path) -> list[dict]:
    lines = (out_dir / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _good(variants: list[ProceduralVariant]) -> ProceduralVariant:
    return next(v for v in variants if v.kind == "good")


def _recipe_id(recipe: EditRecipe) -> str:
    return recipe.instruction.replace(" ", "-")


@pytest.mark.parametrize("recipe", RECIPES, ids=_recipe_id)
def test_it_makes_four_distinct_variants_that_differ_from_the_source(
    recipe: EditRecipe, small_photo: Image.Image
) -> None:
    variants = make_variants(small_photo, recipe, np.random.default_rng(3))

    pixels = {v.image.tobytes() for v in variants}
    assert len(variants) == 4
    assert len(pixels) == 4
    assert small_photo.tobytes() not in pixels
    assert all(v.image.size == small_photo.size and v.image.mode == "RGB" for v in variants)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("recipe", RECIPES, ids=_recipe_id)
def test_it_scores_the_correct_good_strength_variant_highest(
    recipe: EditRecipe, seed: int, small_photo: Image.Image
) -> None:
    variants = make_variants(small_photo, recipe, np.random.default_rng(seed))

    for variant in variants:
        assert set(variant.truth) == set(ASPECTS)
        assert all(0.0 <= score <= 5.0 for score in variant.truth.values())
    good = _good(variants)
    assert good.params["correct"] is True
    assert max(variants, key=lambda v: v.overall) is good
    assert len({v.overall for v in variants}) == 4


def test_it_records_how_each_variant_was_made(small_photo: Image.Image) -> None:
    recipe = next(r for r in RECIPES if r.operation.name == "grayscale")

    variants = make_variants(small_photo, recipe, np.random.default_rng(0))

    assert [v.kind for v in variants] == ["good", "weak", "overdone", "flawed"]
    for variant in variants:
        assert {"operation", "strength", "seed", "correct", "kind"} <= set(variant.params)
    assert [v.params["correct"] for v in variants] == [True, True, True, False]
    weak, overdone = variants[1].params["strength"], variants[2].params["strength"]
    assert weak < variants[0].params["strength"] < overdone


def test_it_reproduces_a_variant_from_its_params(small_photo: Image.Image) -> None:
    good = _good(make_variants(small_photo, RECIPES[0], np.random.default_rng(5)))

    op = OPERATIONS[str(good.params["operation"])]
    remade = op(small_photo, float(good.params["strength"]))

    assert remade.tobytes() == good.image.tobytes()


def test_it_writes_a_manifest_of_importable_tasks(demo_dir: Path) -> None:
    tasks = _read_manifest(demo_dir)

    assert len(tasks) >= 24
    for task in tasks:
        assert task["category"] in CATEGORIES
        assert task["external_id"].startswith("demo-")
        assert task["instruction"] and "{" not in task["instruction"]
        paths = [task["source"]] + [variant["image"] for variant in task["variants"]]
        for path in paths:
            with Image.open(demo_dir / path) as image:
                assert max(image.size) <= 512
        assert len(task["variants"]) == 4


def test_it_covers_several_categories_with_distinct_tasks(demo_dir: Path) -> None:
    tasks = _read_manifest(demo_dir)

    assert len({task["category"] for task in tasks}) >= 4
    assert len({(task["source"], task["instruction"]) for task in tasks}) == len(tasks)
    assert len({task["external_id"] for task in tasks}) == len(tasks)


def test_it_writes_variants_that_differ_from_each_other_and_the_source(demo_dir: Path) -> None:
    for task in _read_manifest(demo_dir):
        files = [task["source"]] + [variant["image"] for variant in task["variants"]]
        contents = {(demo_dir / path).read_bytes() for path in files}
        assert len(contents) == 5, task["external_id"]


def test_it_stores_generator_seed_and_truth_with_each_variant(demo_dir: Path) -> None:
    for task in _read_manifest(demo_dir):
        for variant in task["variants"]:
            assert variant["generator"] == "procedural"
            assert variant["seed"] == variant["params"]["seed"]
            truth = variant["params"]["truth"]
            assert set(truth) == set(ASPECTS)
            assert all(0.0 <= score <= 5.0 for score in truth.values())


def test_it_is_deterministic_for_the_same_seed(demo_dir: Path, tmp_path: Path) -> None:
    build_demo_manifest(tmp_path, seed=0)

    assert (tmp_path / "manifest.jsonl").read_bytes() == (demo_dir / "manifest.jsonl").read_bytes()
    for path in (demo_dir / "img").iterdir():
        assert (tmp_path / "img" / path.name).read_bytes() == path.read_bytes(), path.name


def test_it_changes_with_the_seed(demo_dir: Path, tmp_path: Path) -> None:
    build_demo_manifest(tmp_path, n_tasks=8, seed=1)

    other = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert other != (demo_dir / "manifest.jsonl").read_text().splitlines()[:8]


def test_it_refuses_more_tasks_than_distinct_pairs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="distinct photo/recipe pairs"):
        build_demo_manifest(tmp_path, n_tasks=10_000)
