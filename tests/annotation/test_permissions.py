"""Nobody reads or changes what is not theirs: personas against every door."""

import pytest
from django.test import Client

from annotation.models import Assignment, Judgement
from tests.conftest import PASSWORD, client_for, full_judgement, task_files, task_line, zip_archive


@pytest.fixture
def lease(project, annotator) -> dict:
    return client_for(annotator).post(f"/api/v1/projects/{project.pk}/next/").json()


def browser_for(user) -> Client:
    client = Client()
    client.login(username=user.username, password=PASSWORD)
    return client


def test_it_refuses_someone_elses_assignment_judgement(lease, other_annotator):
    response = client_for(other_annotator).post(
        f"/api/v1/assignments/{lease['assignment']['id']}/judgement/",
        full_judgement(lease),
        format="json",
    )

    assert response.status_code == 404
    assert Judgement.objects.count() == 0


def test_it_refuses_to_skip_someone_elses_assignment(lease, other_annotator):
    response = client_for(other_annotator).post(
        f"/api/v1/assignments/{lease['assignment']['id']}/skip/", {"reason": "x"}, format="json"
    )

    assert response.status_code == 404
    assert Assignment.objects.get().status == "leased"


def test_even_a_manager_cannot_submit_for_an_annotator(lease, manager):
    response = client_for(manager).post(
        f"/api/v1/assignments/{lease['assignment']['id']}/judgement/",
        full_judgement(lease),
        format="json",
    )

    assert response.status_code == 404


def test_an_outsider_cannot_see_the_project(project, outsider):
    api = client_for(outsider)

    assert api.get(f"/api/v1/projects/{project.pk}/").status_code == 404
    assert api.post(f"/api/v1/projects/{project.pk}/next/").status_code == 404
    assert api.get("/api/v1/projects/").json() == []


def test_an_annotator_cannot_import(project, annotator):
    response = client_for(annotator).post(
        f"/api/v1/projects/{project.pk}/imports/",
        {"archive": zip_archive([task_line(9)], task_files(9))},
        format="multipart",
    )

    assert response.status_code == 403
    assert project.tasks.count() == 3


def test_an_annotator_cannot_add_members(project, annotator, outsider):
    response = client_for(annotator).post(
        f"/api/v1/projects/{project.pk}/members/",
        {"username": "outsider", "role": "manager"},
        format="json",
    )

    assert response.status_code == 403
    assert project.role_of(outsider) is None


def test_an_annotator_cannot_see_other_annotators_figures(project, annotator):
    assert client_for(annotator).get(f"/api/v1/projects/{project.pk}/stats/").status_code == 403


def test_an_annotator_cannot_reach_the_admin(annotator):
    response = browser_for(annotator).get("/admin/annotation/judgement/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_anonymous_callers_get_nothing(project):
    api = client_for(None)

    assert api.get("/api/v1/projects/").status_code in (401, 403)
    assert api.post(f"/api/v1/projects/{project.pk}/next/").status_code in (401, 403)


def test_images_are_served_to_members(lease, annotator):
    url = lease["assignment"]["task"]["variants"][0]["url"]

    response = browser_for(annotator).get(url)

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")


def test_images_are_hidden_from_outsiders(lease, outsider):
    url = lease["assignment"]["task"]["source"]["url"]

    assert browser_for(outsider).get(url).status_code == 404
    assert browser_for(outsider).get(url + "thumb/").status_code == 404


def test_images_send_anonymous_visitors_to_log_in(lease):
    response = Client().get(lease["assignment"]["task"]["source"]["url"])

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_images_accept_an_api_token(lease, annotator):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=annotator)
    response = Client().get(
        lease["assignment"]["task"]["source"]["url"], HTTP_AUTHORIZATION=f"Token {token.key}"
    )

    assert response.status_code == 200


def test_thumbnails_are_jpeg(lease, annotator):
    response = browser_for(annotator).get(lease["assignment"]["task"]["source"]["url"] + "thumb/")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
