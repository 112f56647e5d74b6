"""The annotation page in headless Chromium: keyboard alone, mouse, pairwise A/B, reload.

Data goes in through the real importer; judgements come out of the real API into Postgres,
and the assertions read the rows back.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.contrib.auth.models import User
from PIL import Image as PILImage
from PIL import ImageEnhance, ImageFilter, ImageOps
from playwright.sync_api import Locator, Page, Route, expect
from skimage import data as skimage_data

from annotation.importers import import_directory
from annotation.models import AspectScore, Assignment, Judgement, Membership, Project
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOT_COPY = Path("/tmp/editloop-annotate.png")
ASPECTS = ["following", "preserving", "quality"]


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def ranking_project(annotator: User, tmp_path: Path) -> Project:
    project = Project.objects.create(
        name="Browser: rank 4",
        guidelines="Rank best to worst.\n\nThen score every aspect 0–5 (0 is a real score).",
    )
    Membership.objects.create(project=project, user=annotator)
    import_directory(project, write_manifest(tmp_path / "ranking", tasks=2, variants=4))
    return project


@pytest.fixture
def pairwise_project(annotator: User, tmp_path: Path) -> Project:
    project = Project.objects.create(name="Browser: A/B", mode=Project.Mode.PAIRWISE)
    Membership.objects.create(project=project, user=annotator)
    import_directory(project, write_manifest(tmp_path / "pairwise", tasks=1, variants=2))
    return project


# --- data: real photos edited with Pillow, imported through the real importer -----------------

EDITS: list[Callable[[PILImage.Image], PILImage.Image]] = [
    lambda image: ImageEnhance.Color(image).enhance(1.8),
    lambda image: ImageOps.grayscale(image).convert("RGB"),
    lambda image: image.filter(ImageFilter.GaussianBlur(3)),
    lambda image: ImageEnhance.Brightness(image).enhance(1.4),
]


def photo(index: int) -> PILImage.Image:
    array = [skimage_data.chelsea, skimage_data.coffee][index % 2]()
    image = PILImage.fromarray(array).convert("RGB")
    image.thumbnail((360, 240))
    return image


def write_manifest(root: Path, *, tasks: int, variants: int) -> Path:
    root.mkdir(parents=True)
    lines = []
    for task in range(tasks):
        source = photo(task)
        source.save(root / f"src{task}.png")
        names = []
        for variant in range(variants):
            name = f"t{task}_v{variant}.png"
            EDITS[variant](source).save(root / name)
            names.append({"image": name, "generator": "pillow", "seed": variant})
        lines.append(
            {
                "source": f"src{task}.png",
                "instruction": f"make the colours of photo {task} warmer and more vivid",
                "category": "global",
                "external_id": f"browser-{task}",
                "variants": names,
            }
        )
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return manifest


# --- helpers ------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def wait_for_path(page: Page, path: str) -> None:
    # Compare paths: the login page's own URL ends with "?next=<path>" and would match a glob.
    page.wait_for_url(lambda url: urlparse(url).path == path)


def log_in_with_keyboard(page: Page, next_path: str) -> None:
    page.goto(f"/accounts/login/?next={next_path}")
    # autofocus lands after load: typing before it would lose the first keys
    page.wait_for_function("document.activeElement && document.activeElement.id === 'id_username'")
    page.keyboard.type("annotator")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    wait_for_path(page, next_path)


def log_in(page: Page, next_path: str) -> None:
    page.goto(f"/accounts/login/?next={next_path}")
    page.fill("#id_username", "annotator")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    wait_for_path(page, next_path)


def assignment_on_screen(page: Page) -> Assignment:
    page.wait_for_selector("#app[data-assignment-id]")
    return Assignment.objects.get(pk=int(page.get_attribute("#app", "data-assignment-id")))


def wait_for_prefetch(annotator: User, leases: int = 2) -> None:
    """The page leases the next task in the background as soon as one is shown."""
    wait_until(lambda: Assignment.objects.filter(annotator=annotator).count() >= leases)


def chosen_score(page: Page, variant: int, aspect: str) -> Locator:
    cell = f'.cell[data-variant="{variant}"][data-aspect="{aspect}"]'
    return page.locator(f'{cell} button[aria-checked="true"]')


def saved_scores(judgement: Judgement) -> dict[tuple[int, str], int]:
    return {
        (row.variant_id, row.aspect): row.value
        for row in AspectScore.objects.filter(judgement=judgement)
    }


def expected_rows(scores: dict[int, list[int]]) -> dict[tuple[int, str], int]:
    return {
        (variant, aspect): value
        for variant, values in scores.items()
        for aspect, value in zip(ASPECTS, values, strict=True)
    }


def as_json_scores(scores: dict[int, list[int]]) -> dict[str, dict[str, int]]:
    return {str(v): dict(zip(ASPECTS, values, strict=True)) for v, values in scores.items()}


def submitted_judgement(assignment: Assignment) -> Judgement:
    wait_until(lambda: Judgement.objects.filter(assignment=assignment).exists())
    return Judgement.objects.get(assignment=assignment)


# --- tests --------------------------------------------------------------------------------------


def test_it_ranks_scores_and_submits_with_the_keyboard_alone(
    page: Page, ranking_project: Project, annotator: User, tmp_path: Path
) -> None:
    # given a logged-in annotator on the annotation page
    annotate_path = f"/projects/{ranking_project.pk}/annotate/"
    log_in_with_keyboard(page, annotate_path)
    assignment = assignment_on_screen(page)
    a, b, c, d = assignment.display_order
    wait_for_prefetch(annotator)

    # when they rank C > A = D > B by letters (a tie by Shift, a slip undone by Backspace)
    for key in ["c", "a", "b", "Backspace", "Shift+D", "b"]:
        page.keyboard.press(key)
    expect(page.locator("#ranking .tier")).to_have_count(3)
    expect(page.locator("#ranking .tier.tied")).to_have_count(1)

    # and score every cell with digits (0 is a real score), then note C's quality
    typed = {a: [0, 1, 2], b: [3, 4, 5], c: [5, 4, 3], d: [2, 1, 0]}
    for values in typed.values():
        for value in values:
            page.keyboard.press(str(value))
    page.keyboard.press("ArrowLeft")  # from D/quality to C/quality
    page.keyboard.press("n")
    page.keyboard.type("a seam along the left edge")
    page.keyboard.press("Enter")
    expect(page.locator("#missing")).to_have_text("Ready to submit")
    expect(page.locator("#submit")).to_be_enabled()

    page.screenshot(path=str(tmp_path / "annotate.png"))
    shutil.copyfile(tmp_path / "annotate.png", SCREENSHOT_COPY)

    page.keyboard.press("Enter")

    # then the judgement is saved as typed, and the next task is on screen
    judgement = submitted_judgement(assignment)
    expect(page.locator("#app")).not_to_have_attribute("data-assignment-id", str(assignment.pk))
    expect(page.locator("#save-status")).to_have_text("Saved ✓")
    assert judgement.ranking == [[c], [a, d], [b]]
    assert judgement.unsure is False
    assert judgement.scores == as_json_scores(typed)
    assert saved_scores(judgement) == expected_rows(typed)
    assert judgement.notes == {str(c): {"quality": "a seam along the left edge"}}
    assert judgement.ranking_ms is not None and judgement.scoring_ms is not None
    assert judgement.total_ms == judgement.ranking_ms + judgement.scoring_ms
    next_assignment = assignment_on_screen(page)
    assert next_assignment.pk != assignment.pk
    assert next_assignment.task_id != assignment.task_id
    expect(page.locator("#instruction")).to_have_text(next_assignment.task.instruction)


def test_it_ranks_by_drag_and_drop_and_scores_by_clicking(
    page: Page, ranking_project: Project, annotator: User
) -> None:
    # given
    log_in(page, f"/projects/{ranking_project.pk}/annotate/")
    assignment = assignment_on_screen(page)
    a, b, c, d = assignment.display_order

    def chip(variant: int):
        return page.locator(f'#ranking [data-chip="{variant}"]')

    # when: B first; D after it; A onto B's tier (a tie); C into the gap between the tiers
    chip(b).drag_to(page.locator('#ranking .gap[data-gap="0"]'))
    expect(page.locator("#ranking .tier")).to_have_count(1)
    chip(d).drag_to(page.locator('#ranking .gap[data-gap="1"]'))
    chip(a).drag_to(page.locator('#ranking .tier[data-tier="0"]'))
    chip(c).drag_to(page.locator('#ranking .gap[data-gap="1"]'))
    expect(page.locator("#ranking .tier")).to_have_count(3)

    clicked = {a: [5, 5, 4], b: [5, 4, 4], c: [2, 3, 0], d: [0, 0, 1]}
    for variant, values in clicked.items():
        for aspect, value in zip(ASPECTS, values, strict=True):
            cell = page.locator(f'.cell[data-variant="{variant}"][data-aspect="{aspect}"]')
            cell.locator(f'button[data-value="{value}"]').click()
    page.click("#unsure-toggle")
    page.click("#submit")

    # then
    judgement = submitted_judgement(assignment)
    assert judgement.ranking == [[b, a], [c], [d]]
    assert judgement.unsure is True
    assert saved_scores(judgement) == expected_rows(clicked)
    assert judgement.notes == {}


def test_it_takes_a_pairwise_choice_from_the_keys(
    page: Page, pairwise_project: Project, annotator: User
) -> None:
    # given an A/B task
    log_in(page, f"/projects/{pairwise_project.pk}/annotate/")
    assignment = assignment_on_screen(page)
    left, right = assignment.display_order
    expect(page.locator(".choice-bar")).to_be_visible()

    # when: ← says left is better, then six digits score both, Enter submits
    page.keyboard.press("ArrowLeft")
    expect(page.locator(".choice-left")).to_have_attribute("aria-pressed", "true")
    typed = {left: [5, 4, 3], right: [0, 1, 2]}
    for values in typed.values():
        for value in values:
            page.keyboard.press(str(value))
    page.keyboard.press("Enter")

    # then, and with the only task judged the queue is empty
    judgement = submitted_judgement(assignment)
    assert judgement.ranking == [[left], [right]]
    assert saved_scores(judgement) == expected_rows(typed)
    expect(page.locator("#done")).to_be_visible()
    expect(page.locator("#done")).to_contain_text("All done")


def test_a_reload_mid_task_restores_the_work_on_the_same_assignment(
    page: Page, ranking_project: Project, annotator: User
) -> None:
    # given some work done on the first task
    log_in(page, f"/projects/{ranking_project.pk}/annotate/")
    assignment = assignment_on_screen(page)
    a, b, c, d = assignment.display_order
    wait_for_prefetch(annotator)
    for key in ["b", "a", "3", "0"]:
        page.keyboard.press(key)
    page.keyboard.press("n")
    page.keyboard.type("too dark")
    page.keyboard.press("Escape")
    storage_key = f"editloop:v1:u{annotator.pk}:work:{assignment.pk}"
    client_id = page.evaluate(f"JSON.parse(localStorage.getItem('{storage_key}')).clientId")

    # when the page is reloaded
    page.reload()

    # then the same lease is back, with its ranking, scores and note, and no new lease
    assert assignment_on_screen(page).pk == assignment.pk
    expect(page.locator("#ranking .tier")).to_have_count(2)
    expect(chosen_score(page, a, "following")).to_have_text("3")
    expect(chosen_score(page, a, "preserving")).to_have_text("0")
    note_marker = page.locator(f'.cell[data-variant="{a}"][data-aspect="quality"] + .note-button')
    expect(note_marker).to_have_class("note-button has-note")
    wait_for_prefetch(annotator)
    assert Assignment.objects.filter(annotator=annotator).count() == 2

    # and finishing the task sends what was kept, under the same client_id
    for key in ["c", "d", *["4"] * 10]:
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    judgement = submitted_judgement(assignment)
    assert str(judgement.client_id) == client_id
    assert judgement.ranking == [[b], [a], [c], [d]]
    assert judgement.scores[str(a)] == {"following": 3, "preserving": 0, "quality": 4}
    assert judgement.notes == {str(a): {"quality": "too dark"}}


def test_a_submission_whose_answer_is_lost_is_retried_and_saved_once(
    page: Page, ranking_project: Project, annotator: User
) -> None:
    # given the first answer to a judgement is lost after the server saved it (a network
    # drop on the way back), and the second attempt fails with a 503
    attempts: list[str] = []

    def flaky(route: Route) -> None:
        attempts.append(json.loads(route.request.post_data)["client_id"])
        if len(attempts) == 1:
            route.fetch()  # reaches Django and saves...
            route.abort("connectionreset")  # ...but the page never hears back
        elif len(attempts) == 2:
            route.fulfill(status=503, body="busy")
        else:
            route.continue_()

    page.route("**/judgement/", flaky)
    log_in(page, f"/projects/{ranking_project.pk}/annotate/")
    assignment = assignment_on_screen(page)
    wait_for_prefetch(annotator)

    # when the annotator submits a complete judgement
    for key in ["a", "b", "c", "d", *["3"] * 12, "Enter"]:
        page.keyboard.press(key)

    # then the next task shows at once while the page keeps retrying in the background
    expect(page.locator("#app")).not_to_have_attribute("data-assignment-id", str(assignment.pk))
    expect(page.locator("#save-status")).to_have_text("Saved ✓", timeout=15_000)
    assert len(attempts) == 3
    assert len(set(attempts)) == 1, "every retry must reuse the client_id"
    judgement = Judgement.objects.get(assignment=assignment)
    assert str(judgement.client_id) == attempts[0]
    assert Judgement.objects.filter(assignment__annotator=annotator).count() == 1
    outbox = page.evaluate(f"localStorage.getItem('editloop:v1:u{annotator.pk}:outbox')")
    assert json.loads(outbox) == []


def test_the_queue_lists_my_projects_and_opens_the_annotation_page(
    page: Page, ranking_project: Project, pairwise_project: Project, annotator: User
) -> None:
    # given a project the annotator is not a member of
    Project.objects.create(name="Someone else's project")

    # when
    log_in(page, "/")

    # then only their projects are listed, with progress and a way in
    rows = page.locator(".project-row")
    expect(rows).to_have_count(2)
    expect(page.locator(".project-list")).not_to_contain_text("Someone else's project")
    ranking_row = rows.filter(has_text=ranking_project.name)
    expect(ranking_row).to_contain_text("0 judged by you · 2 open for you")
    ranking_row.get_by_role("link", name="Start annotating").click()
    wait_for_path(page, f"/projects/{ranking_project.pk}/annotate/")
    expect(page.locator("#instruction")).not_to_be_empty()
    outsider_page = page.goto(
        f"/projects/{Project.objects.get(name__startswith='Someone').pk}/annotate/"
    )
    assert outsider_page.status == 404
