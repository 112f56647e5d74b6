"""The project dashboard: who may open it, what it plots, and how it looks in Chromium."""

from pathlib import Path

import pytest
from django.test import Client

from annotation.models import Membership
from evaluation.simulated_judgements import fill_with_simulated_judgements
from tests.conftest import PASSWORD, client_for, log_in_as
from training.models import FinetuneRun

SCREENSHOT = Path("/tmp/editloop-dashboard.png")


@pytest.fixture
def busy_project(procedural_project, manager, annotator):
    project = procedural_project(tasks=8, overlap=2)
    Membership.objects.create(project=project, user=annotator)
    fill_with_simulated_judgements(project, 16, annotators=3, seed=2)
    FinetuneRun.objects.create(
        project=project, method="dpo", status="succeeded", step=40, current_loss=0.61,
        is_random_init=True, evaluation={"tasks": 2, "win_rate": 0.75},
    )
    return project


def _page(user, project) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(f"/projects/{project.pk}/dashboard/")
    assert response.status_code == 200
    return response.content.decode()


def test_a_manager_sees_every_section_plotted(busy_project, manager):
    page = _page(manager, busy_project)

    for title in ("Progress over time", "Annotators", "Agreement per aspect",
                  "Score distributions", "Time per task", "Reward model",
                  "Editor fine-tuning"):
        assert f">{title}</h2>" in page
    assert page.count("<svg") >= 9
    assert page.count("<polyline") >= 4  # progress, needed line, score distributions
    assert "simulated-1" in page  # the simulated annotators are named in the table
    assert "run " in page and "0.750" in page  # the fine-tune's win rate
    assert "dpo (tiny random-init)" in page


def test_annotators_and_outsiders_cannot_open_it(busy_project, annotator, outsider):
    for user, code in ((annotator, 403), (outsider, 404)):
        client = Client()
        client.force_login(user)
        assert client.get(f"/projects/{busy_project.pk}/dashboard/").status_code == code


def test_the_stats_api_carries_agreement_by_username(busy_project, manager):
    stats = client_for(manager).get(f"/api/v1/projects/{busy_project.pk}/stats/").json()

    agreement = stats["agreement"]
    assert agreement["judgements"] == 16
    assert 0.0 <= agreement["ranking"]["pairwise_agreement"] <= 1.0
    assert set(agreement["scores"]["alpha_ordinal"]) == {"following", "preserving", "quality"}
    assert all(name.startswith("simulated-") for name in agreement["by_annotator"])


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_dashboard_renders_its_plots_in_chromium(busy_project, manager, page):
    manager.set_password(PASSWORD)
    manager.save()
    path = f"/projects/{busy_project.pk}/dashboard/"

    log_in_as(page, "manager", path)

    page.wait_for_selector("svg.chart")
    boxes = [box for box in (c.bounding_box() for c in page.query_selector_all("svg.chart"))
             if box]
    assert len(boxes) >= 9
    assert all(box["width"] > 300 and box["height"] > 50 for box in boxes)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 50_000  # a page of plots, not a blank one


def test_the_reward_model_is_shown_beside_the_annotators_on_the_same_items(
    busy_project, manager
):
    from rewards.models import RewardModelVersion

    first = RewardModelVersion.objects.create(
        project=busy_project, number=1, status="retired", directory="v1", dataset_hash="0" * 64,
    )  # fmt: skip
    RewardModelVersion.objects.create(
        project=busy_project, number=2, status="active", directory="v2", dataset_hash="0" * 64,
        parent=first,
        metrics={
            "test": {
                "pairwise_accuracy": 0.611,
                "ceiling_items": {"pairwise_accuracy": 0.644},
                "human_ceiling": {"pairwise_accuracy": 0.733, "tasks": 3},
            },
            "versus_active": {"split": "val", "against_version": 1, "candidate": 0.622,
                              "active": 0.511},
        },
    )  # fmt: skip

    page = _page(manager, busy_project)

    assert "model on the ceiling&#x27;s items" in page or "model on the ceiling's items" in page
    for shown in ("0.611", "0.644", "0.733", "val: 0.622 vs v1 0.511"):
        assert f"<td>{shown}</td>" in page
    assert "promoted on val, test is reported only" in page
