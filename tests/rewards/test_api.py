"""Reward-model endpoints of the API contract: who may do what, and what comes back."""

import io

import pytest
from rest_framework.test import APIClient

from rewards import scheduling
from rewards.models import RewardTrainingRun
from tests.conftest import client_for, png_bytes


def upload(name: str, colour=(200, 120, 40)) -> io.BytesIO:
    data = io.BytesIO(png_bytes(colour, (48, 40)))
    data.name = name
    return data


METRICS = {"test": {"pairwise_accuracy": 0.71, "human_ceiling": {"pairwise_accuracy": 0.8}}}


@pytest.fixture
def trained(procedural_project, tiny_version):
    """A procedural project with an active (tiny, untrained) reward-model version."""
    project = procedural_project(tasks=2, overlap=1)
    version = tiny_version(project, metrics=METRICS)
    return project, version


# --- retrain runs --------------------------------------------------------------------------


def test_a_manager_starts_a_retrain_and_follows_it(project, manager):
    client = client_for(manager)

    answer = client.post(f"/api/v1/projects/{project.pk}/reward-runs/", {}, format="json")

    assert answer.status_code == 202
    run = RewardTrainingRun.objects.get(pk=answer.json()["id"])
    assert run.trigger == "api" and run.requested_by == manager and run.base == "tiny"
    followed = client.get(f"/api/v1/reward-runs/{run.pk}/").json()
    assert followed["status"] == "pending"
    assert followed["version"] is None
    assert set(followed) >= {"id", "status", "progress", "message", "version"}


def test_a_second_retrain_while_one_is_active_is_409_with_the_active_run(project, manager):
    client = client_for(manager)
    first = client.post(f"/api/v1/projects/{project.pk}/reward-runs/", {}, format="json").json()

    answer = client.post(f"/api/v1/projects/{project.pk}/reward-runs/", {}, format="json")

    assert answer.status_code == 409
    assert answer.json()["run"]["id"] == first["id"]
    assert RewardTrainingRun.objects.count() == 1


@pytest.mark.parametrize(
    "body, field",
    [
        ({"heads": "sideways"}, "heads"),
        ({"options": {"epochs": 0}}, "options"),
        ({"options": {"lr_typo": 1}}, "options"),
        ({"options": {"frozen_prefix": True, "freeze_fraction": 0.7}}, "options"),
        ({"options": {"freeze_fraction": "most"}}, "options"),
        ({"base": "/etc"}, "base"),
    ],
)
def test_bad_retrain_requests_name_the_field_and_start_nothing(project, manager, body, field):
    answer = client_for(manager).post(
        f"/api/v1/projects/{project.pk}/reward-runs/", body, format="json"
    )

    assert answer.status_code == 400
    assert field in answer.json()
    assert not RewardTrainingRun.objects.exists()


def test_options_that_clash_with_the_projects_are_refused_naming_options(project, manager):
    project.reward_options = {"frozen_prefix": True, "freeze_fraction": 1.0}
    project.save()

    answer = client_for(manager).post(
        f"/api/v1/projects/{project.pk}/reward-runs/",
        {"options": {"freeze_fraction": 0.7}},
        format="json",
    )

    assert answer.status_code == 400
    assert "freeze_fraction" in answer.json()["options"][0]
    assert not RewardTrainingRun.objects.exists()


def test_a_bad_base_and_bad_options_are_named_in_one_answer(project, manager):
    answer = client_for(manager).post(
        f"/api/v1/projects/{project.pk}/reward-runs/",
        {"base": "nope", "options": {"lr_typo": 1}},
        format="json",
    )

    assert answer.status_code == 400
    assert "no registered base named 'nope'" in answer.json()["base"][0]
    assert "lr_typo" in answer.json()["options"][0]


def test_a_bug_while_starting_a_retrain_is_a_500_not_a_bad_request(project, manager, monkeypatch):
    def broken(project):
        raise ValueError("an internal bug, nothing the request said")

    monkeypatch.setattr(scheduling, "new_judgements_since_last_version", broken)
    api = APIClient(raise_request_exception=False)
    api.force_authenticate(manager)

    answer = api.post(
        f"/api/v1/projects/{project.pk}/reward-runs/", {"options": {"epochs": 2}}, format="json"
    )

    assert answer.status_code == 500
    assert not RewardTrainingRun.objects.exists()


def test_staff_may_name_a_checkpoint_directory_only_if_it_is_one(project, staff, tmp_path):
    answer = client_for(staff).post(
        f"/api/v1/projects/{project.pk}/reward-runs/", {"base": str(tmp_path)}, format="json"
    )

    assert answer.status_code == 400
    assert "no config.json" in answer.json()["base"][0]


def test_annotators_cannot_retrain_and_outsiders_do_not_see_the_project(
    project, annotator, outsider
):
    url = f"/api/v1/projects/{project.pk}/reward-runs/"

    assert client_for(annotator).post(url, {}, format="json").status_code == 403
    assert client_for(outsider).post(url, {}, format="json").status_code == 404
    assert not RewardTrainingRun.objects.exists()


def test_nobody_outside_the_project_reads_its_runs(project, manager, annotator, outsider):
    run = scheduling.request_retrain(project, trigger="api", enqueue=False)

    assert client_for(manager).get(f"/api/v1/reward-runs/{run.pk}/").status_code == 200
    assert client_for(annotator).get(f"/api/v1/reward-runs/{run.pk}/").status_code == 403
    assert client_for(outsider).get(f"/api/v1/reward-runs/{run.pk}/").status_code == 404
    assert client_for(manager).get("/api/v1/reward-runs/999999/").status_code == 404


def test_a_manager_cancels_a_pending_run(project, manager):
    run = scheduling.request_retrain(project, trigger="api", enqueue=False)

    answer = client_for(manager).post(f"/api/v1/reward-runs/{run.pk}/cancel/")

    assert answer.status_code == 202
    assert answer.json()["status"] == "cancelled"
    again = client_for(manager).post(f"/api/v1/reward-runs/{run.pk}/cancel/")
    assert again.status_code == 409


# --- versions and scoring ---------------------------------------------------------------------


def test_the_versions_list_shows_metrics_and_which_is_active(trained, manager):
    project, version = trained

    answer = client_for(manager).get(f"/api/v1/projects/{project.pk}/reward-models/").json()

    assert answer["active"] == version.pk
    (shown,) = answer["versions"]
    assert shown["tiny_random_init"] is True
    assert shown["metrics"] == METRICS


def test_scoring_any_edit_with_the_active_version(trained, manager):
    project, version = trained

    answer = client_for(manager).post(
        f"/api/v1/reward-models/active/score/?project={project.pk}",
        {
            "instruction": "make it warmer",
            "source": upload("source.png"),
            "edited": [upload("a.png", (250, 120, 40)), upload("b.png", (10, 10, 10))],
        },
        format="multipart",
    )

    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["version"] == version.pk and body["tiny_random_init"] is True
    assert len(body["results"]) == 2
    for result in body["results"]:
        assert isinstance(result["overall"], float)
        assert set(result["aspects"]) == {"following", "preserving", "quality"}


def test_one_edited_image_gives_overall_and_aspects_at_the_top(trained, manager):
    project, version = trained

    body = (
        client_for(manager)
        .post(
            f"/api/v1/reward-models/{version.pk}/score/",
            {"instruction": "x", "source": upload("s.png"), "edited": [upload("e.png")]},
            format="multipart",
        )
        .json()
    )

    assert body["overall"] == body["results"][0]["overall"]
    assert set(body["aspects"]) == {"following", "preserving", "quality"}


def test_scoring_refuses_what_is_not_an_image(trained, manager):
    project, version = trained
    junk = io.BytesIO(b"plain text, not an image")
    junk.name = "junk.png"

    answer = client_for(manager).post(
        f"/api/v1/reward-models/{version.pk}/score/",
        {"instruction": "x", "source": upload("s.png"), "edited": [junk]},
        format="multipart",
    )

    assert answer.status_code == 400
    assert "edited" in answer.json()


def test_scoring_needs_an_instruction_and_the_images(trained, manager):
    project, version = trained

    answer = client_for(manager).post(
        f"/api/v1/reward-models/{version.pk}/score/", {}, format="multipart"
    )

    assert answer.status_code == 400
    assert {"instruction", "source", "edited"} <= set(answer.json())


def test_active_needs_a_project_and_an_active_version(project, manager):
    client = client_for(manager)
    url = "/api/v1/reward-models/active/score/"
    files = {"instruction": "x", "source": upload("s.png"), "edited": [upload("e.png")]}

    assert client.post(url, files, format="multipart").status_code == 400
    files = {"instruction": "x", "source": upload("s.png"), "edited": [upload("e.png")]}
    assert client.post(f"{url}?project={project.pk}", files, format="multipart").status_code == 404


def test_outsiders_and_annotators_cannot_score(trained, annotator, outsider):
    project, version = trained
    url = f"/api/v1/reward-models/{version.pk}/score/"

    def post(user):
        files = {"instruction": "x", "source": upload("s.png"), "edited": [upload("e.png")]}
        return client_for(user).post(url, files, format="multipart").status_code

    assert post(outsider) == 404
    assert post(annotator) == 404  # not a member of the procedural project


# --- named bases ---------------------------------------------------------------------------


def test_managers_list_the_bases_without_paths_and_staff_see_the_paths(
    project, manager, staff, blip_itm_dir
):
    scheduling.register_base("blip-tiny", str(blip_itm_dir), user=staff)

    managed = client_for(manager).get("/api/v1/bases/")
    staffed = client_for(staff).get("/api/v1/bases/")

    assert managed.status_code == 200 and staffed.status_code == 200
    tiny, blip = managed.json()
    assert tiny["name"] == "tiny" and tiny["builtin"] and tiny["kind"] == "tiny"
    assert blip == {
        "name": "blip-tiny", "kind": "blip-itm", "parameters": 807_552, "image_size": 64,
        "builtin": False, "checked_at": blip["checked_at"],
    }  # fmt: skip
    assert "path" not in tiny and "path" not in blip
    assert staffed.json()[1]["path"] == str(blip_itm_dir)


def test_annotators_and_outsiders_may_not_list_the_bases(project, annotator, outsider):
    assert client_for(annotator).get("/api/v1/bases/").status_code == 403
    assert client_for(outsider).get("/api/v1/bases/").status_code == 403


def test_a_manager_starts_a_retrain_on_a_registered_base_by_name(project, manager, blip_itm_dir):
    scheduling.register_base("blip-tiny", str(blip_itm_dir))

    answer = client_for(manager).post(
        f"/api/v1/projects/{project.pk}/reward-runs/", {"base": "blip-tiny"}, format="json"
    )

    assert answer.status_code == 202
    assert answer.json()["base"] == "blip-tiny"
    assert RewardTrainingRun.objects.get().base == "blip-tiny"


@pytest.mark.parametrize("base", ["blip-itm", "nope"])
def test_a_manager_naming_a_path_or_an_unknown_name_gets_400_naming_base(
    project, manager, blip_itm_dir, base
):
    given = str(blip_itm_dir) if base == "blip-itm" else base

    answer = client_for(manager).post(
        f"/api/v1/projects/{project.pk}/reward-runs/", {"base": given}, format="json"
    )

    assert answer.status_code == 400
    assert list(answer.json()) == ["base"]
    assert not RewardTrainingRun.objects.exists()


def test_staff_naming_a_checkpoint_of_the_wrong_kind_get_400_saying_what_is_missing(
    project, staff, captioning_dir
):
    answer = client_for(staff).post(
        f"/api/v1/projects/{project.pk}/reward-runs/", {"base": str(captioning_dir)}, format="json"
    )

    assert answer.status_code == 400
    message = answer.json()["base"][0]
    assert "BlipForConditionalGeneration" in message and "text_encoder" in message
    assert not RewardTrainingRun.objects.exists()


def test_staff_may_name_a_blip_itm_directory(project, staff, blip_itm_dir):
    answer = client_for(staff).post(
        f"/api/v1/projects/{project.pk}/reward-runs/", {"base": str(blip_itm_dir)}, format="json"
    )

    assert answer.status_code == 202
    assert RewardTrainingRun.objects.get().base == str(blip_itm_dir)
