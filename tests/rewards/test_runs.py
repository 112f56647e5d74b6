"""A retrain from judgements in Postgres to a registered, evaluated, promoted version."""

import pytest
from django.contrib.auth.models import User
from PIL import Image as PILImage

from annotation.assignment import lease_next_task
from annotation.models import Membership
from evaluation.simulated_judgements import fill_with_simulated_judgements
from rewards import scheduling
from rewards.models import RewardModelVersion, RewardTrainingRun, VariantScore
from rewards.runs import execute

QUICK = {"epochs": 3, "batch_size": 8, "patience": None}


def _run(project, **options) -> RewardTrainingRun:
    run = scheduling.request_retrain(
        project, trigger="command", options={**QUICK, **options}, enqueue=False
    )
    execute(run)
    run.refresh_from_db()
    return run


def test_a_first_run_registers_an_active_version_with_metrics(judged_project):
    run = _run(judged_project)

    assert run.status == "succeeded", run.message
    assert run.progress == 1.0
    version = run.version
    assert version.is_active and version.number == 1 and version.is_random_init
    assert "tiny random-init" in run.message
    assert (version.path / "reward_model.json").is_file()
    assert len(version.judgement_ids) == 42 == run.judgements_used
    for split in ("val", "test"):
        metrics = version.metrics[split]
        assert 0.0 <= metrics["pairwise_accuracy"] <= 1.0
        assert set(metrics["aspect_mae"]) == {"following", "preserving", "quality"}
        assert 0.0 <= metrics["human_ceiling"]["pairwise_accuracy"] <= 1.0
    assert run.loss_curve and all("loss" in point for point in run.loss_curve)
    assert run.val_curve


def test_the_projects_reward_options_build_a_frozen_prefix_model(judged_project):
    judged_project.reward_options = {
        "freeze_fraction": 1.0, "text_freeze_fraction": 0.5, "frozen_prefix": True,
    }  # fmt: skip
    judged_project.save()

    run = _run(judged_project)

    assert run.status == "succeeded", run.message
    model = run.version.config["model"]
    assert model["frozen_prefix"] and model["freeze_fraction"] == 1.0
    result = run.version.config["result"]
    assert result["prefix_cache_misses"] > 0  # the text prefixes were cached
    assert run.options["epochs"] == QUICK["epochs"]  # the request's own options joined them


def test_the_same_data_twice_does_not_replace_a_version_it_does_not_beat(judged_project):
    first = _run(judged_project).version
    second = _run(judged_project).version

    first.refresh_from_db()
    versus = second.metrics["versus_active"]
    assert versus["against_version"] == 1 and versus["split"] == "val"
    assert versus["items"] > 0 and versus["test"]["items"] > 0
    assert versus["reason"] in second.training_run.message
    if versus["candidate"] > versus["active"]:
        assert second.is_active and first.status == "retired"
    else:
        assert second.status == "candidate" and first.is_active
    assert second.parent == first


def test_too_few_judgements_skip_the_run_and_say_how_many_are_needed(procedural_project, settings):
    settings.REWARD_MIN_TRAIN_JUDGEMENTS = 50
    project = procedural_project(tasks=4, overlap=1)
    fill_with_simulated_judgements(project, 4, annotators=1)

    run = _run(project)

    assert run.status == "skipped"
    assert "needs at least 50 judgements" in run.message
    assert not RewardModelVersion.objects.exists()


def test_a_corrupt_image_fails_the_run_naming_the_image(judged_project, settings):
    variant = judged_project.tasks.filter(split="train").first().variants.first()
    path = settings.MEDIA_ROOT / variant.image.file.name
    path.write_bytes(b"not a png any more")

    run = _run(judged_project)

    assert run.status == "failed"
    assert variant.image.sha256 in run.message
    assert not RewardModelVersion.objects.exists()


def test_an_active_version_scores_every_variant(procedural_project, tiny_version):
    from rewards.variant_scores import score_project_variants

    judged_project = procedural_project(tasks=3)
    version = tiny_version(judged_project)

    scored = score_project_variants(version)

    variants = judged_project.tasks.count() * 4
    assert scored == variants == VariantScore.objects.filter(version=version).count()


def test_active_learning_moves_tasks_the_model_cannot_tell_apart_up(
    procedural_project, tiny_version
):
    from rewards.variant_scores import score_project_variants

    judged_project = procedural_project(tasks=4)
    judged_project.active_learning = True
    judged_project.save()
    version = tiny_version(judged_project)

    score_project_variants(version)

    priorities = list(judged_project.tasks.values_list("model_priority", flat=True))
    assert any(p > 0 for p in priorities)
    assert all(0 <= p <= 100 for p in priorities)
    # The queue serves the task the model is least sure about first.
    newcomer = User.objects.create_user("newcomer")
    Membership.objects.create(project=judged_project, user=newcomer)
    assert lease_next_task(judged_project, newcomer).task.model_priority == max(priorities)


def test_indistinguishability_is_one_for_equal_scores_and_near_zero_far_apart():
    from rewards.variant_scores import indistinguishability

    assert indistinguishability([0.3, 0.3, 2.0]) == pytest.approx(1.0)
    assert indistinguishability([0.0, 12.0]) < 1e-4
    assert indistinguishability([1.0]) == 0.0
    assert indistinguishability([0.0, 1.0]) > indistinguishability([0.0, 2.0])


def test_the_scoring_function_matches_stored_scores(procedural_project, tiny_version, settings):
    from rewards.registry import loaded_model
    from rewards.scoring import score_images
    from rewards.variant_scores import score_project_variants

    judged_project = procedural_project(tasks=2)
    version = tiny_version(judged_project)
    score_project_variants(version)
    variant = judged_project.tasks.first().variants.first()
    stored = VariantScore.objects.get(variant=variant, version=version)

    with PILImage.open(settings.MEDIA_ROOT / variant.task.source.file.name) as source:
        with PILImage.open(settings.MEDIA_ROOT / variant.image.file.name) as edited:
            (fresh,) = score_images(
                loaded_model(version),
                source.convert("RGB"),
                [edited.convert("RGB")],
                variant.task.instruction,
            )
    assert fresh["overall"] == pytest.approx(stored.overall, abs=1e-4)


def test_a_candidate_that_only_ties_the_active_version_stays_a_candidate(
    judged_project, tiny_version
):
    from rewards.records import judgement_records
    from rewards.registry import loaded_model
    from rewards.runs import decide_promotion, split_records
    from rewards.selection import training_judgements

    active = tiny_version(judged_project, number=1)
    candidate = tiny_version(judged_project, number=2, status="candidate")
    candidate.parent = active
    by_split = split_records(judgement_records(training_judgements(judged_project)))

    promoted = decide_promotion(
        candidate, loaded_model(candidate), by_split["val"], by_split["test"]
    )

    candidate.refresh_from_db(), active.refresh_from_db()
    assert promoted is False
    assert candidate.status == "candidate" and active.is_active
    versus = candidate.metrics["versus_active"]
    assert versus["split"] == "val"
    assert versus["candidate"] == versus["active"] and versus["items"] == len(by_split["val"]) > 0


# --- promotion is decided on val; test is reported only ----------------------------------------


def _version_of(project, number: int, seed: int, settings, **fields):
    """A registered version whose files are a tiny model of its own (`seed`), so two of them
    score the same variants differently."""
    from rewards.reward_model import BlipRewardModel, RewardModelConfig

    directory = f"project-{project.pk}/v{number}"
    BlipRewardModel.build(RewardModelConfig(seed=seed)).save(settings.REWARD_MODEL_ROOT / directory)
    return RewardModelVersion.objects.create(
        project=project, number=number, base="tiny", is_random_init=True, directory=directory,
        dataset_hash="0" * 64, metrics={"epsilon": 0.0}, **fields,
    )  # fmt: skip


def _ranked_by(model, records):
    """The records with each ranking replaced by `model`'s order: that model agrees with
    every pair, another one with fewer."""
    from dataclasses import replace

    from rewards.scoring import score_judgement_variants

    scores = score_judgement_variants(model, records)
    return [
        replace(r, ranking=[[v] for v in sorted(r.variants, key=lambda v: -scores[v]["overall"])])
        for r in records
    ]


@pytest.fixture
def two_versions(judged_project, settings):
    from rewards.records import judgement_records
    from rewards.registry import loaded_model
    from rewards.runs import split_records
    from rewards.selection import training_judgements

    active = _version_of(judged_project, 1, seed=1, settings=settings, status="active")
    candidate = _version_of(judged_project, 2, seed=2, settings=settings, parent=active)
    by_split = split_records(judgement_records(training_judgements(judged_project)))
    return active, candidate, loaded_model(active), loaded_model(candidate), by_split


def test_a_candidate_better_on_test_but_worse_on_val_is_not_promoted(two_versions):
    from rewards.runs import decide_promotion

    active, candidate, active_model, model, by_split = two_versions
    val = _ranked_by(active_model, by_split["val"])  # the active version is right on val
    test = _ranked_by(model, by_split["test"])  # the candidate is right on test

    promoted = decide_promotion(candidate, model, val, test)

    candidate.refresh_from_db(), active.refresh_from_db()
    versus = candidate.metrics["versus_active"]
    assert versus["test"]["candidate"] == 1.0 > versus["test"]["active"]
    assert versus["active"] == 1.0 > versus["candidate"]
    assert promoted is False and candidate.status == "candidate" and active.is_active
    assert versus["split"] == "val" and versus["items"] == len(val)
    assert versus["reason"] == "it does not beat the active version on val"
    assert versus["test"]["items"] == len(test) and "reported only" in versus["test"]["note"]


def test_a_candidate_better_on_val_but_worse_on_test_is_promoted(two_versions):
    from rewards.runs import decide_promotion

    active, candidate, active_model, model, by_split = two_versions
    val = _ranked_by(model, by_split["val"])
    test = _ranked_by(active_model, by_split["test"])

    promoted = decide_promotion(candidate, model, val, test)

    candidate.refresh_from_db(), active.refresh_from_db()
    versus = candidate.metrics["versus_active"]
    assert versus["candidate"] == 1.0 > versus["active"]
    assert versus["test"]["active"] == 1.0 > versus["test"]["candidate"]
    assert promoted is True and candidate.is_active and active.status == "retired"


def test_without_val_judgements_the_active_version_stays_and_says_why(two_versions):
    from rewards.runs import decide_promotion

    active, candidate, _, model, by_split = two_versions
    test = _ranked_by(model, by_split["test"])

    promoted = decide_promotion(candidate, model, [], test)

    candidate.refresh_from_db(), active.refresh_from_db()
    assert promoted is False and active.is_active
    versus = candidate.metrics["versus_active"]
    assert versus["items"] == 0 and versus["candidate"] is None
    assert versus["reason"] == "no val judgements to compare on: the active version stays"
