"""Each endpoint and status code of the API contract in DESIGN.md."""

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import Assignment, EditTask, Membership, Project
from tests.conftest import PASSWORD, client_for, full_judgement, task_files, task_line, zip_archive


def test_it_exchanges_a_password_for_a_token(annotator):
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "annotator", "password": PASSWORD}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {"token": Token.objects.get(user=annotator).key}


def test_a_token_authenticates_api_calls(project, annotator):
    token = (
        APIClient()
        .post("/api/v1/auth/token/", {"username": "annotator", "password": PASSWORD}, format="json")
        .json()["token"]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    response = client.get("/api/v1/projects/")

    assert response.status_code == 200
    assert [p["name"] for p in response.json()] == ["Warm edits"]


def test_it_refuses_a_wrong_password(annotator):
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "annotator", "password": "nope"}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["wrong username or password"]}


def test_repeated_failed_logins_are_throttled(annotator, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    client = APIClient()
    for _ in range(3):
        client.post(
            "/api/v1/auth/token/", {"username": "annotator", "password": "x"}, format="json"
        )

    response = client.post(
        "/api/v1/auth/token/", {"username": "annotator", "password": PASSWORD}, format="json"
    )

    assert response.status_code == 429
    assert "Too many failed logins" in response.json()["detail"]


def test_the_browser_login_is_throttled_too(annotator, settings, client):
    settings.LOGIN_FAILURE_LIMIT = 2
    for _ in range(2):
        client.post("/accounts/login/", {"username": "annotator", "password": "x"})

    response = client.post("/accounts/login/", {"username": "annotator", "password": PASSWORD})

    assert response.status_code == 200  # the form again, with the message
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_staff_creates_accounts(staff):
    response = client_for(staff).post(
        "/api/v1/users/",
        {"username": "carol", "password": "a long password", "is_staff": False},
        format="json",
    )

    assert response.status_code == 201
    assert response.json() == {"id": User.objects.get(username="carol").pk, "username": "carol"}
    assert User.objects.get(username="carol").check_password("a long password")


def test_only_staff_creates_accounts(manager):
    response = client_for(manager).post(
        "/api/v1/users/", {"username": "x", "password": "a long password"}, format="json"
    )

    assert response.status_code == 403
    assert not User.objects.filter(username="x").exists()


def test_staff_creates_a_project_with_default_aspects(staff):
    response = client_for(staff).post(
        "/api/v1/projects/", {"name": "New", "mode": "pairwise", "overlap": 3}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["mode"], body["overlap"]) == ("New", "pairwise", 3)
    assert [a["key"] for a in body["aspects"]] == ["following", "preserving", "quality"]
    assert Membership.objects.get(project_id=body["id"], user=staff).role == "manager"


def test_a_project_can_name_its_own_aspects(staff):
    aspects = [{"key": "realism", "description": "looks real"}, {"key": "faithful"}]
    response = client_for(staff).post(
        "/api/v1/projects/",
        {"name": "Own", "mode": "ranking", "overlap": 1, "aspects": aspects},
        format="json",
    )

    assert response.status_code == 201
    assert [a["key"] for a in response.json()["aspects"]] == ["realism", "faithful"]


def test_a_project_keeps_its_reward_options(staff):
    options = {"freeze_fraction": 1.0, "text_freeze_fraction": 0.7, "frozen_prefix": True}
    response = client_for(staff).post(
        "/api/v1/projects/",
        {"name": "Fast", "mode": "ranking", "overlap": 1, "reward_options": options},
        format="json",
    )

    assert response.status_code == 201
    assert Project.objects.get(pk=response.json()["id"]).reward_options == options


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "X", "mode": "fancy", "overlap": 1}, "mode"),
        ({"name": "X", "mode": "ranking", "overlap": 0}, "overlap"),
        ({"name": "X", "mode": "ranking", "overlap": 1, "aspects": [{"key": "a b"}]}, "aspects"),
        ({"name": "X", "mode": "ranking", "overlap": 1, "gold_rate": 1.5}, "gold_rate"),
        (
            {"name": "X", "mode": "ranking", "overlap": 1, "reward_options": {"epoch": 3}},
            "reward_options",
        ),
    ],
)
def test_it_refuses_a_bad_project(staff, body, field):
    response = client_for(staff).post("/api/v1/projects/", body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not Project.objects.filter(name="X").exists()


def test_only_staff_creates_projects(manager):
    response = client_for(manager).post(
        "/api/v1/projects/", {"name": "Mine", "mode": "ranking", "overlap": 1}, format="json"
    )

    assert response.status_code == 403


def test_a_manager_adds_members(project, manager, outsider):
    response = client_for(manager).post(
        f"/api/v1/projects/{project.pk}/members/",
        {"username": "outsider", "role": "annotator"},
        format="json",
    )

    assert response.status_code == 201
    assert project.role_of(outsider) == "annotator"


def test_adding_an_unknown_user_names_the_field(project, manager):
    response = client_for(manager).post(
        f"/api/v1/projects/{project.pk}/members/",
        {"username": "ghost", "role": "annotator"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"username": ["no user named 'ghost'"]}


def test_a_manager_imports_an_archive(project, manager):
    archive = zip_archive([task_line(10)], task_files(10))

    response = client_for(manager).post(
        f"/api/v1/projects/{project.pk}/imports/", {"archive": archive}, format="multipart"
    )

    assert response.status_code == 201
    assert response.json() == {"tasks": 1, "variants": 4}


def test_a_refused_import_answers_400_with_line_field_and_message(project, manager):
    archive = zip_archive([task_line(10, category="sparkle")], task_files(10))

    response = client_for(manager).post(
        f"/api/v1/projects/{project.pk}/imports/", {"archive": archive}, format="multipart"
    )

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert (error["line"], error["field"]) == (1, "category")
    assert project.tasks.count() == 3


def test_next_leases_a_task_in_the_contract_shape(project, annotator):
    response = client_for(annotator).post(f"/api/v1/projects/{project.pk}/next/")

    assert response.status_code == 200
    assignment = response.json()["assignment"]
    stored = Assignment.objects.get(pk=assignment["id"])
    task = assignment["task"]
    assert task["instruction"] == stored.task.instruction
    assert task["category"] == "global"
    assert task["source"] == {"url": stored.task.source.url, "width": 32, "height": 24}
    assert [v["id"] for v in task["variants"]] == stored.display_order
    assert all(v["url"].startswith("/images/") for v in task["variants"])
    assert assignment["expires_at"].startswith(str(stored.expires_at.date()))


def test_next_answers_204_when_there_is_no_work(project, annotator):
    EditTask.objects.all().delete()

    response = client_for(annotator).post(f"/api/v1/projects/{project.pk}/next/")

    assert response.status_code == 204


def test_skip_records_the_reason(project, annotator):
    api = client_for(annotator)
    lease = api.post(f"/api/v1/projects/{project.pk}/next/").json()

    response = api.post(
        f"/api/v1/assignments/{lease['assignment']['id']}/skip/",
        {"reason": "broken image"},
        format="json",
    )

    assert response.status_code == 200
    stored = Assignment.objects.get()
    assert (stored.status, stored.skip_reason) == ("skipped", "broken image")


def test_stats_show_progress_and_annotator_figures(project, manager, annotator):
    api = client_for(annotator)
    lease = api.post(f"/api/v1/projects/{project.pk}/next/").json()
    api.post(
        f"/api/v1/assignments/{lease['assignment']['id']}/judgement/",
        full_judgement(lease),
        format="json",
    )

    response = client_for(manager).get(f"/api/v1/projects/{project.pk}/stats/")

    assert response.status_code == 200
    body = response.json()
    assert (body["tasks"], body["judgements"], body["complete"]) == (3, 1, 0)
    [figures] = body["annotators"]
    assert figures["username"] == "annotator"
    assert figures["judgements"] == 1
    assert figures["median_total_ms"] == 16000


def test_the_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    docs = client.get("/api/docs/")

    assert schema.status_code == 200
    assert b"/api/v1/assignments/{id}/judgement/" in schema.content
    assert docs.status_code == 200


def test_session_auth_needs_csrf(project, annotator):
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="annotator", password=PASSWORD)

    response = client.post(f"/api/v1/projects/{project.pk}/next/")

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
