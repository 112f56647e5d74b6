"""Every invalid judgement gets a 400 naming the field, and nothing is saved."""

import copy
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import AspectScore, Assignment, EditTask, Judgement
from tests.conftest import client_for, full_judgement


@pytest.fixture
def api(annotator):
    return client_for(annotator)


@pytest.fixture
def lease(project, api) -> dict:
    response = api.post(f"/api/v1/projects/{project.pk}/next/", {}, format="json")
    assert response.status_code == 200
    return response.json()


def submit(api, lease: dict, body: dict):
    return api.post(
        f"/api/v1/assignments/{lease['assignment']['id']}/judgement/", body, format="json"
    )


def variant_ids(lease: dict) -> list[int]:
    return [variant["id"] for variant in lease["assignment"]["task"]["variants"]]


def assert_refused(response, field: str, fragment: str) -> None:
    assert response.status_code == 400, response.content
    messages = response.json()[field]
    assert any(fragment in message for message in messages), messages
    assert Judgement.objects.count() == 0
    assert AspectScore.objects.count() == 0
    assert Assignment.objects.get().status == "leased"


def test_it_saves_a_judgement_with_scores_as_rows(api, lease):
    body = full_judgement(lease)

    response = submit(api, lease, body)

    assert response.status_code == 201
    judgement = Judgement.objects.get(pk=response.json()["judgement"]["id"])
    assert judgement.ranking == body["ranking"]
    assert judgement.scores == body["scores"]
    assert judgement.notes == body["notes"]
    assert (judgement.ranking_ms, judgement.scoring_ms, judgement.total_ms) == (5400, 9100, 16000)
    rows = {(s.variant_id, s.aspect): s.value for s in judgement.aspect_scores.all()}
    assert len(rows) == 12
    first = variant_ids(lease)[0]
    assert rows[(first, "following")] == 0  # 0 is a real score, stored as such
    assert judgement.assignment.status == "submitted"
    assert EditTask.objects.get(pk=lease["assignment"]["task"]["id"]).judgement_count == 1


def test_a_retry_with_the_same_client_id_returns_the_same_judgement(api, lease):
    body = full_judgement(lease)
    first = submit(api, lease, body)

    again = submit(api, lease, body)

    assert again.status_code == 200
    assert again.json() == first.json()
    assert Judgement.objects.count() == 1
    assert EditTask.objects.get(pk=lease["assignment"]["task"]["id"]).judgement_count == 1


def test_a_second_judgement_with_another_client_id_is_a_conflict(api, lease):
    submit(api, lease, full_judgement(lease))

    response = submit(
        api, lease, full_judgement(lease, client_id="11111111-2222-4333-8444-555555555555")
    )

    assert response.status_code == 409
    assert Judgement.objects.count() == 1


def test_it_refuses_a_ranking_that_misses_a_variant(api, lease):
    body = full_judgement(lease)
    missing = body["ranking"][-1].pop()
    body["ranking"] = [tier for tier in body["ranking"] if tier]

    assert_refused(submit(api, lease, body), "ranking", f"variant {missing} is missing")


def test_it_refuses_a_ranking_that_repeats_a_variant(api, lease):
    body = full_judgement(lease)
    body["ranking"][0].append(body["ranking"][1][0])

    assert_refused(submit(api, lease, body), "ranking", "appears more than once")


def test_it_refuses_an_unknown_variant(api, lease):
    body = full_judgement(lease)
    body["ranking"].append([999999])

    assert_refused(submit(api, lease, body), "ranking", "variant 999999 is not part of this task")


@pytest.mark.parametrize("value", [6, -1, 2.5, "4", True, None])
def test_it_refuses_a_score_that_is_not_an_integer_from_0_to_5(api, lease, value):
    body = full_judgement(lease)
    first = str(variant_ids(lease)[0])
    body["scores"][first]["quality"] = value

    assert_refused(
        submit(api, lease, body), "scores", f"variant {first}, aspect quality: must be an integer"
    )


def test_it_refuses_a_missing_aspect(api, lease):
    body = full_judgement(lease)
    first = str(variant_ids(lease)[0])
    del body["scores"][first]["preserving"]

    assert_refused(
        submit(api, lease, body), "scores", f"variant {first}, aspect preserving: missing"
    )


def test_it_refuses_a_variant_without_scores(api, lease):
    body = full_judgement(lease)
    last = str(variant_ids(lease)[-1])
    del body["scores"][last]

    assert_refused(submit(api, lease, body), "scores", f"variant {last}: missing")


def test_it_refuses_an_unknown_aspect(api, lease):
    body = full_judgement(lease)
    first = str(variant_ids(lease)[0])
    body["scores"][first]["beauty"] = 3

    assert_refused(submit(api, lease, body), "scores", "unknown aspect 'beauty'")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("ranking", "3 > 1 > 2", "required: tiers"),
        ("ranking", [3, 1], "must be tiers"),
        ("ranking", [["a"], ["b"]], "must be integers"),
        ("unsure", "no", "must be true or false"),
        ("scores", [1, 2], "required: an object"),
        ("notes", "bad", "must be an object"),
        ("timings_ms", {"ranking": -5}, "ranking: must be an integer"),
        ("timings_ms", {"thinking": 5}, "unknown timing 'thinking'"),
        ("client_id", "not-a-uuid", "UUID"),
    ],
)
def test_it_refuses_wrong_types(api, lease, field, value, fragment):
    body = full_judgement(lease)
    body[field] = value

    assert_refused(submit(api, lease, body), field, fragment)


def test_it_refuses_an_oversized_note(api, lease):
    body = full_judgement(lease)
    first = str(variant_ids(lease)[0])
    body["notes"] = {first: {"quality": "x" * 2001}}

    assert_refused(submit(api, lease, body), "notes", "2001 characters, at most 2000")


def test_it_refuses_a_client_id_already_used_elsewhere(project, api, lease):
    submit(api, lease, full_judgement(lease))
    second = api.post(f"/api/v1/projects/{project.pk}/next/", {}, format="json").json()

    response = submit(api, second, full_judgement(second))

    assert response.status_code == 400
    assert response.json() == {"client_id": ["already used for another judgement"]}


def test_a_late_judgement_is_accepted_when_the_slot_is_still_free(api, lease):
    Assignment.objects.update(expires_at=timezone.now() - timedelta(minutes=5))

    response = submit(api, lease, full_judgement(lease))

    assert response.status_code == 201


def test_a_late_judgement_is_refused_when_another_annotator_took_the_slot(
    project, api, lease, other_annotator
):
    project.overlap = 1
    project.save()
    Assignment.objects.update(expires_at=timezone.now() - timedelta(minutes=5))
    EditTask.objects.exclude(pk=lease["assignment"]["task"]["id"]).delete()
    taken = client_for(other_annotator).post(
        f"/api/v1/projects/{project.pk}/next/", {}, format="json"
    )
    assert taken.json()["assignment"]["task"]["id"] == lease["assignment"]["task"]["id"]

    response = submit(api, lease, full_judgement(lease))

    assert response.status_code == 409
    assert "given to another annotator" in response.json()["detail"]
    assert Judgement.objects.count() == 0


def test_a_skipped_assignment_cannot_be_judged(api, lease):
    api.post(
        f"/api/v1/assignments/{lease['assignment']['id']}/skip/",
        {"reason": "blurry"},
        format="json",
    )

    response = submit(api, lease, full_judgement(lease))

    assert response.status_code == 409


def test_ties_are_kept_as_tiers(api, lease):
    body = copy.deepcopy(full_judgement(lease))
    ids = variant_ids(lease)
    body["ranking"] = [ids[:2], ids[2:]]

    response = submit(api, lease, body)

    assert response.status_code == 201
    assert Judgement.objects.get().ranking == [ids[:2], ids[2:]]
