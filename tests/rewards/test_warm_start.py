"""Warm-started retrains: the option, the parent's weights, the fallback to a cold start,
and the schedule's default (issue 11, part 3)."""

import pytest
import torch

from rewards import scheduling
from rewards.config import TrainConfig, WarmStart, split_options
from rewards.models import RewardTrainingRun
from rewards.runs import execute, start_weights

QUICK = {"epochs": 3, "batch_size": 8, "patience": None}


def _run(project, trigger: str = "command", **options) -> RewardTrainingRun:
    run = scheduling.request_retrain(
        project, trigger=trigger, options={**QUICK, **options}, enqueue=False
    )
    execute(run)
    run.refresh_from_db()
    return run


def _build(version, **options):
    from rewards.reward_model import BlipRewardModel, RewardModelConfig

    aspects = list(version.project.aspect_keys)
    return BlipRewardModel.build(RewardModelConfig(aspects=aspects, **options))


# --- the option, torch-free --------------------------------------------------------------------


def test_warm_start_is_an_option_that_is_not_passed_to_the_trainer():
    model, training = split_options({"warm_start": True, "warm_epochs": 2, "epochs": 6})

    assert training == {"epochs": 6} and model == {}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"warm_start": "false"}, "warm_start must be true or false"),
        ({"warm_epochs": 0}, "warm_epochs must be >= 1"),
        ({"warm_epochs": 1.5}, "warm_epochs must be a whole number"),
        ({"warm_begin": True}, "unknown option"),
    ],
)
def test_a_bad_warm_start_option_is_refused_naming_it(options, message):
    with pytest.raises(ValueError, match=message):
        split_options(options)


def test_a_warm_run_trains_a_third_of_the_epochs_unless_told():
    config = TrainConfig(epochs=10, max_steps=80)

    assert WarmStart(True).training(config).epochs == 4  # ceil(10 / 3)
    assert WarmStart(True).training(config).max_steps == 27  # ceil(80 / 3)
    assert WarmStart(True).training(TrainConfig(epochs=1)).epochs == 1
    told = WarmStart(True, warm_epochs=2).training(config)
    assert (told.epochs, told.max_steps) == (2, None)


# --- the schedule's default --------------------------------------------------------------------


def test_scheduled_retrains_warm_start_and_requests_by_people_do_not(project, manager):
    project.retrain_min_new_judgements = 0
    project.save()

    (scheduled,) = scheduling.retrain_due_projects()
    scheduled.claim(), scheduled.finish("failed", "not under test")
    asked = scheduling.request_retrain(project, trigger="api", user=manager, enqueue=False)

    assert scheduled.trigger == "schedule" and scheduled.options["warm_start"] is True
    assert "warm_start" not in asked.options


def test_a_projects_own_warm_start_setting_beats_the_schedules_default(project):
    project.retrain_min_new_judgements = 0
    project.reward_options = {"warm_start": False}
    project.save()

    (scheduled,) = scheduling.retrain_due_projects()

    assert scheduled.options["warm_start"] is False


# --- the parent's weights ------------------------------------------------------------------------


def test_warm_start_loads_the_active_versions_weights_before_training(judged_project):
    from rewards.registry import loaded_model

    parent = _run(judged_project).version
    run = scheduling.request_retrain(
        judged_project, trigger="api", options={"warm_start": True}, enqueue=False
    )
    model = _build(parent)
    fresh_head = model.aspect_heads["quality"][0].weight.detach().clone()

    start = start_weights(run, model, requested=True)

    trained = loaded_model(parent).aspect_heads["quality"][0].weight
    assert start.parent == parent and start.reason is None
    assert torch.equal(model.aspect_heads["quality"][0].weight, trained)
    assert not torch.equal(fresh_head, trained)  # training moved it: the check can fail
    assert torch.equal(model.segment_embedding, loaded_model(parent).segment_embedding)


def test_a_warm_started_retrain_records_its_parent_and_trains_fewer_epochs(judged_project):
    first = _run(judged_project)
    second = _run(judged_project, warm_start=True)

    assert second.status == "succeeded", second.message
    version = second.version
    assert version.config["warm_started_from"] == first.version.number
    assert version.config["warm_start"] == {"requested": True, "reason": None}
    assert version.config["training"]["epochs"] == 1  # a third of QUICK's 3
    assert version.config["result"]["steps"] < first.version.config["result"]["steps"]
    assert "warm-started from v1" in second.message
    # Its frozen layers are the parent's (= the base's): the cache answered every image.
    assert version.config["result"]["cache_misses"] == 0


def test_a_run_without_the_option_starts_cold_and_says_nothing_about_it(judged_project):
    _run(judged_project)
    second = _run(judged_project)

    assert second.version.config["warm_started_from"] is None
    assert second.version.config["warm_start"]["requested"] is False
    assert "cold start" not in second.message


def test_another_architecture_falls_back_to_a_cold_start_naming_the_difference(judged_project):
    _run(judged_project)

    second = _run(judged_project, warm_start=True, fusion="late")

    assert second.status == "succeeded", second.message
    config = second.version.config
    assert config["warm_started_from"] is None
    assert "fusion: 'diff' there, 'late' here" in config["warm_start"]["reason"]
    assert "cold start: v1 does not match this run" in second.message
    assert config["training"]["epochs"] == QUICK["epochs"]  # a cold run trains in full


def test_other_heads_fall_back_to_a_cold_start(judged_project):
    _run(judged_project)
    run = scheduling.request_retrain(
        judged_project, trigger="api", heads="coarse", options={"warm_start": True}, enqueue=False
    )

    start = start_weights(run, _build(run, heads="coarse"), requested=True)

    assert start.parent is None and "heads: 'fine' there, 'coarse' here" in start.reason


def test_a_first_run_asked_to_warm_start_starts_cold_saying_why(judged_project):
    run = _run(judged_project, warm_start=True)

    assert run.status == "succeeded", run.message
    assert run.version.config["warm_started_from"] is None
    assert run.version.config["warm_start"]["reason"] == (
        "the project has no active version to start from"
    )
    assert "cold start: the project has no active version" in run.message
