from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.authentication import forget_cached_tokens


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_it_authenticates_with_a_token_and_remembers_it(
    project, annotator, django_assert_num_queries
):
    token = Token.objects.create(user=annotator)
    forget_cached_tokens()
    token_client(token.key).get("/api/v1/projects/")

    with django_assert_num_queries(2):  # the project list and the caller's roles, no token lookup
        response = token_client(token.key).get("/api/v1/projects/")

    assert response.status_code == 200


def test_it_refuses_an_unknown_token(db):
    response = token_client("0" * 40).get("/api/v1/projects/")

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}


def test_it_refuses_the_token_of_a_deactivated_account(annotator):
    token = Token.objects.create(user=annotator)
    annotator.is_active = False
    annotator.save()
    forget_cached_tokens()

    response = token_client(token.key).get("/api/v1/projects/")

    assert response.status_code == 401
