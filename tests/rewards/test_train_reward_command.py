"""``manage.py train_reward``: trains here, with a progress bar, and says what it made."""

import io

import pytest
from django.core.management import CommandError, call_command

from evaluation.simulated_judgements import fill_with_simulated_judgements
from rewards.models import RewardModelVersion


def test_it_trains_a_version_and_reports_it(procedural_project, settings):
    settings.REWARD_MIN_TRAIN_JUDGEMENTS = 10
    settings.REWARD_MIN_VAL_JUDGEMENTS = 2
    project = procedural_project(tasks=10, overlap=3)
    fill_with_simulated_judgements(project, 30, annotators=3, seed=7)
    out, err = io.StringIO(), io.StringIO()

    call_command(
        "train_reward",
        project.name,
        "--heads",
        "cbm",
        "--set",
        "epochs=2",
        stdout=out,
        stderr=err,
    )

    version = RewardModelVersion.objects.get(project=project)
    assert version.heads == "cbm" and version.is_active
    assert "succeeded" in out.getvalue() and "tiny random-init" in out.getvalue()
    assert "100%" in err.getvalue()  # tqdm's bar


def test_it_names_a_missing_project(db):
    with pytest.raises(CommandError, match="no project 'nope'"):
        call_command("train_reward", "nope")


def test_it_refuses_unknown_options(project):
    with pytest.raises(CommandError, match="unknown option"):
        call_command("train_reward", str(project.pk), "--set", "epochz=2")


def test_it_fails_loudly_when_there_is_too_little_data(project):
    with pytest.raises(CommandError, match="skipped"):
        call_command("train_reward", str(project.pk), stdout=io.StringIO(), stderr=io.StringIO())


def test_it_refuses_a_base_of_the_wrong_kind_before_creating_a_run(project, captioning_dir):
    from rewards.models import RewardTrainingRun

    with pytest.raises(CommandError, match="--base: .*BlipForConditionalGeneration"):
        call_command("train_reward", str(project.pk), "--base", str(captioning_dir))

    assert not RewardTrainingRun.objects.exists()


def test_it_refuses_an_unregistered_name(project):
    with pytest.raises(CommandError, match="no registered base named 'blip-large'"):
        call_command("train_reward", str(project.pk), "--base", "blip-large")
