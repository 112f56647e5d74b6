"""Model-level validation the admin relies on (ModelForm calls full_clean)."""

import pytest
from django.core.exceptions import ValidationError

from annotation.models import Project


def test_a_project_with_good_reward_options_is_valid(db):
    options = {"freeze_fraction": 1.0, "text_freeze_fraction": 0.7, "frozen_prefix": True}
    project = Project(name="Fast retrains", reward_options=options)

    project.full_clean()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"epoch": 3}, "epoch"),
        ({"frozen_prefix": True}, "freeze_fraction"),
        ({"epochs": 0}, "epochs"),
        (["epochs"], "JSON object"),
    ],
)
def test_bad_reward_options_are_refused_naming_the_option(db, options, named):
    project = Project(name="Bad options", reward_options=options)

    with pytest.raises(ValidationError) as refused:
        project.full_clean()

    assert named in " ".join(refused.value.message_dict["reward_options"])
