import io
import json
import zipfile

import pytest
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from annotation.importers import ImportRefused, import_directory, import_zip
from annotation.models import EditTask, Image, Project, Variant
from tests.conftest import png_bytes, task_files, task_line, write_manifest_dir, zip_archive


@pytest.fixture
def empty_project(db) -> Project:
    return Project.objects.create(name="Imports")


def refusal(project: Project, lines: list[dict], files: dict[str, bytes], **kwargs):
    with pytest.raises(ImportRefused) as refused:
        import_zip(project, zip_archive(lines, files, **kwargs))
    return [problem.as_dict() for problem in refused.value.problems]


def assert_nothing_saved() -> None:
    assert EditTask.objects.count() == 0
    assert Variant.objects.count() == 0
    assert Image.objects.count() == 0


def test_it_imports_tasks_and_variants_from_a_zip(empty_project):
    lines = [task_line(0), task_line(1, variants=2)]
    files = {**task_files(0), **task_files(1, variants=2)}

    result = import_zip(empty_project, zip_archive(lines, files))

    assert (result.tasks, result.variants) == (2, 6)
    task = EditTask.objects.get(external_id="t-0")
    assert task.instruction == "make photo 0 warmer"
    assert task.category == "global"
    assert task.split in {"train", "val", "test"}
    assert task.variants.count() == 4
    assert sorted(task.variants.values_list("seed", flat=True)) == [0, 1, 2, 3]
    stored = default_storage.open(task.source.file.name).read()
    assert stored == files["img/src0.png"]


def test_it_imports_from_a_directory(empty_project, tmp_path):
    manifest = write_manifest_dir(tmp_path, [task_line(0)], task_files(0))

    result = import_directory(empty_project, manifest)

    assert result.tasks == 1
    assert Variant.objects.filter(task__project=empty_project).count() == 4


def test_it_stores_the_same_photo_once(empty_project):
    import_zip(empty_project, zip_archive([task_line(0)], task_files(0)))
    again = task_line(0, external_id="t-0-again")

    result = import_zip(empty_project, zip_archive([again], task_files(0)))

    assert result.images_stored == 0
    assert Image.objects.count() == 5
    assert EditTask.objects.count() == 2


def test_it_puts_every_task_of_one_photo_in_the_same_split(empty_project):
    lines = [task_line(0, external_id=f"same-{n}") for n in range(20)]
    import_zip(empty_project, zip_archive(lines, task_files(0)))

    assert EditTask.objects.values("split").distinct().count() == 1


def test_split_follows_the_configured_ratios(db):
    project = Project(name="ratios", val_fraction=0.2, test_fraction=0.3)
    splits = [project.split_for(f"{n:064x}") for n in range(2000)]

    assert abs(splits.count("test") / 2000 - 0.3) < 0.05
    assert abs(splits.count("val") / 2000 - 0.2) < 0.05


def test_it_keeps_gold_rankings_as_variant_ids(empty_project):
    line = task_line(0, is_gold=True, gold_ranking=[[2], [0, 1], [3]])
    import_zip(empty_project, zip_archive([line], task_files(0)))

    task = EditTask.objects.get()
    by_seed = {variant.seed: variant.pk for variant in task.variants.all()}
    assert task.is_gold
    assert task.gold_ranking == [[by_seed[2]], [by_seed[0], by_seed[1]], [by_seed[3]]]


def test_it_refuses_a_file_that_is_not_an_image(empty_project):
    files = {**task_files(0), "img/t0_v1.png": b"%PDF-1.4 not a picture"}

    problems = refusal(empty_project, [task_line(0)], files)

    assert problems == [
        {
            "line": 1,
            "field": "variants[1].image",
            "message": "'img/t0_v1.png': not an image Pillow can read",
        }
    ]
    assert_nothing_saved()


def test_it_refuses_a_truncated_image(empty_project):
    buffer = io.BytesIO()
    PILImage.new("RGB", (200, 200), (9, 99, 200)).save(buffer, format="JPEG")
    files = {**task_files(0), "img/t0_v2.png": buffer.getvalue()[:400]}

    problems = refusal(empty_project, [task_line(0)], files)

    assert problems[0]["field"] == "variants[2].image"
    assert "corrupt image" in problems[0]["message"]
    assert_nothing_saved()


def test_it_refuses_a_decompression_bomb(empty_project, settings):
    settings.IMAGE_MAX_PIXELS = 40_000_000
    buffer = io.BytesIO()
    PILImage.new("1", (8000, 6000)).save(buffer, format="PNG")  # 48 Mpx in a few KB
    files = {**task_files(0), "img/src0.png": buffer.getvalue()}

    problems = refusal(empty_project, [task_line(0)], files)

    assert problems[0]["field"] == "source"
    assert "48000000 pixels, over the 40000000 pixel limit" in problems[0]["message"]
    assert_nothing_saved()


def test_it_refuses_archive_members_that_escape_the_archive(empty_project):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.jsonl", json.dumps(task_line(0)))
        for name, data in task_files(0).items():
            archive.writestr(name, data)
        archive.writestr("../../etc/evil.png", png_bytes((1, 2, 3)))

    with pytest.raises(ImportRefused) as refused:
        import_zip(empty_project, buffer)

    assert refused.value.problems[0].field == "archive"
    assert "'../../etc/evil.png' points outside the archive" in refused.value.problems[0].message
    assert_nothing_saved()


def test_it_refuses_manifest_paths_that_escape_the_archive(empty_project, tmp_path):
    (tmp_path / "secret.png").write_bytes(png_bytes((5, 5, 5)))
    inner = tmp_path / "inner"
    line = task_line(0)
    line["source"] = "../secret.png"
    manifest = write_manifest_dir(inner, [line], task_files(0))

    with pytest.raises(ImportRefused) as refused:
        import_directory(empty_project, manifest)

    assert refused.value.problems[0].as_dict() == {
        "line": 1,
        "field": "source",
        "message": "'../secret.png' points outside the archive",
    }
    assert_nothing_saved()


def test_it_refuses_the_same_image_twice_in_one_task(empty_project):
    line = task_line(0)
    line["variants"][3]["image"] = "img/t0_v1.png"

    problems = refusal(empty_project, [line], task_files(0))

    assert problems == [
        {"line": 1, "field": "variants[3].image", "message": problems[0]["message"]}
    ]
    assert problems[0]["message"].startswith("same image as variants[1]")


def test_it_refuses_identical_bytes_under_two_names(empty_project):
    files = {**task_files(0), "img/copy.png": task_files(0)["img/t0_v0.png"]}
    line = task_line(0)
    line["variants"][2]["image"] = "img/copy.png"

    problems = refusal(empty_project, [line], files)

    assert problems[0]["field"] == "variants[2].image"


def test_it_refuses_an_unknown_category(empty_project):
    problems = refusal(empty_project, [task_line(0, category="sparkle")], task_files(0))

    assert problems[0]["field"] == "category"
    assert "unknown category 'sparkle'" in problems[0]["message"]


def test_it_refuses_fewer_than_two_variants(empty_project):
    problems = refusal(empty_project, [task_line(0, variants=1)], task_files(0, variants=1))

    assert problems == [
        {"line": 1, "field": "variants", "message": "needs at least 2 variants, got 1"}
    ]


def test_it_refuses_more_than_two_variants_in_a_pairwise_project(db):
    project = Project.objects.create(name="AB", mode=Project.Mode.PAIRWISE)

    problems = refusal(project, [task_line(0)], task_files(0))

    assert problems[0]["message"] == "a pairwise project needs exactly 2 variants, got 4"


def test_one_bad_line_refuses_the_whole_import(empty_project):
    lines = [task_line(0), task_line(1), task_line(2, instruction="")]
    files = {**task_files(0), **task_files(1), **task_files(2)}

    problems = refusal(empty_project, lines, files)

    assert problems == [
        {"line": 3, "field": "instruction", "message": "required: a non-empty string"}
    ]
    assert_nothing_saved()
    assert not default_storage.exists("images")


def test_it_names_every_problem_with_its_line(empty_project):
    lines = [task_line(0, category="nope"), task_line(1)]
    manifest = json.dumps(lines[0]) + "\n{not json\n" + json.dumps(lines[1])

    problems = refusal(empty_project, lines, {**task_files(0)}, manifest_text=manifest)

    fields = [(p["line"], p["field"]) for p in problems]
    assert (1, "category") in fields
    assert (2, "line") in fields
    assert (3, "source") in fields  # img/src1.png is not in the archive


def test_it_refuses_a_missing_file(empty_project):
    files = task_files(0)
    del files["img/t0_v3.png"]

    problems = refusal(empty_project, [task_line(0)], files)

    assert problems == [
        {
            "line": 1,
            "field": "variants[3].image",
            "message": "'img/t0_v3.png' is not in the archive",
        }
    ]


def test_it_refuses_an_external_id_already_imported(empty_project):
    import_zip(empty_project, zip_archive([task_line(0)], task_files(0)))

    problems = refusal(empty_project, [task_line(0)], task_files(0))

    assert problems == [{"line": 1, "field": "external_id", "message": "'t-0' is already imported"}]


def test_it_refuses_a_non_zip_upload(empty_project):
    with pytest.raises(ImportRefused) as refused:
        import_zip(empty_project, io.BytesIO(b"plain text"))

    assert refused.value.problems[0].message == "not a zip archive"


def test_it_refuses_an_archive_without_manifest(empty_project):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("img/a.png", png_bytes((1, 1, 1)))

    with pytest.raises(ImportRefused) as refused:
        import_zip(empty_project, buffer)

    assert "no manifest.jsonl" in refused.value.problems[0].message
