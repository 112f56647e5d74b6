"""Fine-tune and generation endpoints: who may call them, what a bad request is told, single
flight, cancel. Runs are not executed here (test_finetune_runs.py, test_worker.py do)."""

import pytest

from annotation.models import Membership, Project
from tests.conftest import client_for
from training.models import FinetuneRun, GenerationRun


@pytest.fixture
def finetune_url(project) -> str:
    return f"/api/v1/projects/{project.pk}/finetune-runs/"


@pytest.fixture
def generation_url(project) -> str:
    return f"/api/v1/projects/{project.pk}/generation-runs/"


def test_a_manager_launches_a_finetune_and_follows_it(project, manager, finetune_url):
    response = client_for(manager).post(
        finetune_url,
        {"method": "dpo", "options": {"max_steps": 5}, "filters": {"include_simulated": False}},
        format="json",
    )

    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "pending" and body["method"] == "dpo"
    assert body["tiny_random_init"] is True
    run = FinetuneRun.objects.get(pk=body["id"])
    assert run.requested_by == manager and run.options == {"max_steps": 5}
    assert run.filters == {"include_simulated": False}

    followed = client_for(manager).get(f"/api/v1/finetune-runs/{run.pk}/")
    assert followed.status_code == 200
    assert followed.json()["id"] == run.pk and followed.json()["progress"] == 0
    listed = client_for(manager).get(finetune_url).json()
    assert [r["id"] for r in listed] == [run.pk]


def test_annotators_and_outsiders_cannot_launch_or_read_runs(
    project, annotator, outsider, manager, finetune_url
):
    assert client_for(annotator).post(finetune_url, {"method": "supervised"}).status_code == 403
    assert client_for(outsider).post(finetune_url, {"method": "supervised"}).status_code == 404
    run = FinetuneRun.objects.create(project=project, method="supervised")
    assert client_for(annotator).get(f"/api/v1/finetune-runs/{run.pk}/").status_code == 403
    assert client_for(outsider).get(f"/api/v1/finetune-runs/{run.pk}/").status_code == 404
    assert client_for(outsider).post(f"/api/v1/finetune-runs/{run.pk}/cancel/").status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"method": "magic"}, "method", "not a valid choice"),
        ({"method": "dpo", "options": {"learning_rat": 1}}, "options", "unknown option"),
        ({"method": "dpo", "options": {"max_steps": 0}}, "options", "max_steps"),
        ({"method": "dpo", "filters": {"rounds": "all"}}, "filters", "rounds"),
        ({"method": "dpo", "reward_version": 999999}, "reward_version", "no reward model"),
        ({"method": "dpo", "reward_source": "crowd"}, "reward_source", "not a valid choice"),
        ({"method": "dpo", "base": "/srv/models/ip2p"}, "base", "only staff"),
    ],
)
def test_a_bad_request_names_the_field_and_saves_nothing(
    project, manager, finetune_url, body, field, words
):
    response = client_for(manager).post(finetune_url, body, format="json")

    assert response.status_code == 400
    assert words in str(response.json()[field])
    assert not FinetuneRun.objects.exists()


def test_every_wrong_value_is_named_in_one_answer(project, manager, finetune_url):
    body = {"method": "magic", "reward_source": "crowd", "filters": {"rounds": "all"}}

    response = client_for(manager).post(finetune_url, body, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"method", "reward_source", "filters"}
    assert "supervised" in response.json()["method"][0]  # it says what would do


def test_staff_must_name_a_real_pipeline_directory(project, staff, finetune_url, tmp_path):
    response = client_for(staff).post(
        finetune_url, {"method": "supervised", "base": str(tmp_path)}, format="json"
    )

    assert response.status_code == 400
    assert "model_index.json" in str(response.json()["base"])


def test_a_second_finetune_of_a_project_waits_for_the_first(project, manager, finetune_url):
    first = client_for(manager).post(finetune_url, {"method": "supervised"}, format="json")

    second = client_for(manager).post(finetune_url, {"method": "weighted"}, format="json")

    assert second.status_code == 409
    assert second.json()["run"]["id"] == first.json()["id"]
    assert FinetuneRun.objects.count() == 1


def test_cancel_stops_a_pending_run_at_once_and_refuses_a_finished_one(project, manager):
    run = FinetuneRun.objects.create(project=project, method="supervised")

    response = client_for(manager).post(f"/api/v1/finetune-runs/{run.pk}/cancel/")

    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    again = client_for(manager).post(f"/api/v1/finetune-runs/{run.pk}/cancel/")
    assert again.status_code == 409


def test_a_generation_run_records_seeds_guidance_and_the_next_round(
    project, manager, generation_url
):
    response = client_for(manager).post(
        generation_url,
        {"seeds": [7, 8, 9], "guidance_scales": [[7.5, 1.5], [5, 1.2], [9, 2]],
         "splits": ["train"], "max_tasks": 2},
        format="json",
    )

    assert response.status_code == 202, response.json()
    run = GenerationRun.objects.get(pk=response.json()["id"])
    assert (run.variants_per_task, run.seeds, run.round) == (3, [7, 8, 9], 2)
    assert run.guidance_scales == [[7.5, 1.5], [5, 1.2], [9, 2]]
    assert client_for(manager).get(f"/api/v1/generation-runs/{run.pk}/").json()["round"] == 2


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"seeds": [1, 2], "variants_per_task": 3}, "seeds", "one seed per variant"),
        ({"guidance_scales": [[7.5]]}, "guidance_scales", "[text, image]"),
        ({"variants_per_task": 1}, "variants_per_task", "greater than or equal to 2"),
        ({"variants_per_task": 0}, "variants_per_task", "greater than or equal to 2"),
        ({"variants_per_task": 17}, "variants_per_task", "at most 16"),
        ({"guidance_scales": [[7.5, -1.5]] * 4}, "guidance_scales", ">= 0"),
        ({"splits": ["holdout"]}, "splits", "not a valid choice"),
        ({"editor": "/srv/ip2p"}, "editor", "only staff"),
        ({"finetune_run": 999999}, "finetune_run", "no fine-tune run"),
    ],
)
def test_a_bad_generation_request_names_the_field(
    project, manager, generation_url, body, field, words
):
    response = client_for(manager).post(generation_url, body, format="json")

    assert response.status_code == 400
    assert words in str(response.json()[field])
    assert not GenerationRun.objects.exists()


def test_generation_needs_a_finished_finetune_of_the_same_project(
    project, manager, generation_url
):
    running = FinetuneRun.objects.create(project=project, method="dpo", status="running")
    other = Project.objects.create(name="Other")
    Membership.objects.create(project=other, user=manager, role="manager")
    elsewhere = FinetuneRun.objects.create(project=other, method="dpo", status="succeeded")

    api = client_for(manager)

    not_done = api.post(generation_url, {"finetune_run": running.pk}, format="json")
    not_mine = api.post(generation_url, {"finetune_run": elsewhere.pk}, format="json")

    assert "has not succeeded" in str(not_done.json()["finetune_run"])
    assert "another project" in str(not_mine.json()["finetune_run"])


def test_a_pairwise_project_generates_exactly_two_variants(manager):
    pairwise = Project.objects.create(name="AB", mode="pairwise")
    Membership.objects.create(project=pairwise, user=manager, role="manager")
    url = f"/api/v1/projects/{pairwise.pk}/generation-runs/"

    refused = client_for(manager).post(url, {"variants_per_task": 4}, format="json")
    default = client_for(manager).post(url, {}, format="json")

    assert "exactly 2" in str(refused.json()["variants_per_task"])
    assert default.json()["variants_per_task"] == 2
