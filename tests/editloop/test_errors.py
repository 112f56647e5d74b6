"""The one "your request is wrong" error: merging, its 400 from the API's exception handler,
and admin form errors."""

import pytest
from django import forms
from rest_framework.permissions import AllowAny
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from annotation.importers import ImportProblem, ImportRefused
from editloop.errors import NON_FIELD, FieldErrors, RequestInvalid


def _view_raising(error: Exception):  # returns a view function
    class Refusing(APIView):
        authentication_classes: list = []
        permission_classes = [AllowAny]

        def post(self, request):
            raise error

    return Refusing.as_view()


def _post(view):
    return view(APIRequestFactory().post("/", {}, format="json"))


def test_it_merges_several_fields_keeping_every_message_in_order():
    merged = RequestInvalid.merge(
        [
            RequestInvalid.of("base", "is not a BLIP checkpoint"),
            RequestInvalid.of("options", "unknown option(s) lr_typo"),
            RequestInvalid.of("base", "only staff may name a path"),
            RequestInvalid({"filters": {"rounds": ["a list of round numbers"]}}),
            RequestInvalid({"filters": {"since": ["not a date"]}}),
        ]
    )

    assert merged.errors == {
        "base": ["is not a BLIP checkpoint", "only staff may name a path"],
        "options": ["unknown option(s) lr_typo"],
        "filters": {"rounds": ["a list of round numbers"], "since": ["not a date"]},
    }
    assert str(merged).startswith("base: is not a BLIP checkpoint; base: only staff")
    assert "filters.since: not a date" in str(merged)


def test_merging_leaves_the_merged_refusals_as_they_were():
    first = RequestInvalid.of("base", "one")

    RequestInvalid.merge([first, RequestInvalid.of("base", "two")])

    assert first.errors == {"base": ["one"]}


def test_gathered_checks_are_refused_once_naming_every_field():
    problems = FieldErrors()
    problems.add("method", "'magic' is not a valid choice")
    with problems.gather():
        raise RequestInvalid.of("options", "max_steps: must be >= 1")
    with problems.gather():
        pass  # a check that holds adds nothing

    with pytest.raises(RequestInvalid) as refused:
        problems.raise_if_any()

    assert refused.value.errors == {
        "method": ["'magic' is not a valid choice"],
        "options": ["max_steps: must be >= 1"],
    }


def test_a_lone_gathered_refusal_is_raised_as_it_was():
    class BaseRefused(RequestInvalid):
        pass

    problems = FieldErrors()
    with problems.gather():
        raise BaseRefused.of("base", "no such base")

    with pytest.raises(BaseRefused):
        problems.raise_if_any()
    FieldErrors().raise_if_any()  # nothing gathered: nothing raised


def test_it_is_a_value_error_but_other_exceptions_are_not_gathered():
    assert isinstance(RequestInvalid.of("base", "x"), ValueError)
    problems = FieldErrors()
    with pytest.raises(KeyError), problems.gather():
        raise KeyError("a bug")
    assert not problems


def test_the_api_answers_a_request_invalid_with_400_and_the_field_keyed_body():
    answer = _post(_view_raising(RequestInvalid.of("base", "is not a BLIP checkpoint")))

    assert answer.status_code == 400
    assert answer.data == {"base": ["is not a BLIP checkpoint"]}


def test_the_api_answers_an_import_refusal_with_its_per_line_body():
    problems = [
        ImportProblem(3, "variants[1].image", "not an image Pillow can read"),
        ImportProblem(None, "manifest", "the manifest has no tasks"),
    ]

    answer = _post(_view_raising(ImportRefused(problems)))

    assert answer.status_code == 400
    assert answer.data == {"errors": [problem.as_dict() for problem in problems]}
    assert ImportRefused(problems).errors["variants[1].image"] == [
        "line 3: not an image Pillow can read"
    ]


def test_any_other_exception_is_left_to_drf_and_a_bug_is_not_a_400():
    with pytest.raises(ValueError, match="a bug"):
        _post(_view_raising(ValueError("a bug")))


class LaunchForm(forms.Form):
    base = forms.CharField(required=False)
    filters = forms.JSONField(required=False)


def test_an_admin_form_shows_each_message_on_its_field_or_above_the_form():
    form = LaunchForm(data={"base": "x", "filters": "{}"})
    assert form.is_valid()

    RequestInvalid(
        {
            "base": ["is not a BLIP checkpoint"],
            "filters": {"min_agreement": ["a number from 0 to 1"]},
            "heads": ["'sideways' is not one of coarse, fine, cbm"],
            NON_FIELD: ["the body must be a JSON object"],
        }
    ).add_to_form(form)

    assert form.errors["base"] == ["is not a BLIP checkpoint"]
    assert form.errors["filters"] == ["min_agreement: a number from 0 to 1"]
    assert form.non_field_errors() == [
        "heads: 'sideways' is not one of coarse, fine, cbm",
        "the body must be a JSON object",
    ]
