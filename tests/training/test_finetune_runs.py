"""A fine-tune from judgements in Postgres to a pipeline directory, evaluated against the
base editor with the reward model, in-process (test_worker.py goes through Celery)."""

import pytest
from diffusers import StableDiffusionInstructPix2PixPipeline

from annotation.assignment import lease_next_task
from annotation.models import EditTask, Membership
from evaluation.simulated_judgements import fill_with_simulated_judgements
from training import finetune_runs, scheduling
from training.finetune_runs import compare_scores, evaluation_tasks, execute
from training.models import FinetuneRun

QUICK = {"max_steps": 4, "batch_size": 2, "checkpoint_every": 2}


@pytest.fixture
def judged_project(procedural_project, settings):
    settings.FINETUNE_MIN_EXAMPLES = 4
    settings.FINETUNE_EVAL_TASKS = 2
    project = procedural_project(tasks=8, overlap=1)
    fill_with_simulated_judgements(project, 8, annotators=2, seed=3)
    return project


def _run(project, method: str = "supervised", **fields) -> FinetuneRun:
    options = {**QUICK, **fields.pop("options", {})}
    run = scheduling.request_finetune(
        project, method=method, options=options, enqueue=False, **fields
    )
    execute(run)
    run.refresh_from_db()
    return run


@pytest.mark.parametrize("method", ["supervised", "weighted", "conditional", "multireward", "dpo"])
def test_each_method_trains_and_writes_a_pipeline(judged_project, method):
    run = _run(judged_project, method, evaluate=False)

    assert run.status == "succeeded", run.message
    assert run.step == 4 and run.progress == 1.0
    assert run.is_random_init and "tiny random-init" in run.message
    assert [p["step"] for p in run.loss_curve] == [1, 2, 3, 4]
    assert all(p["loss"] > 0 for p in run.loss_curve)
    assert run.checkpoints and run.checkpoints[-1] == "checkpoint-4"
    assert (run.pipeline_dir / "model_index.json").is_file()
    assert run.examples_used >= 4


def test_the_pipeline_loads_in_stock_diffusers(judged_project):
    run = _run(judged_project, evaluate=False)

    pipeline = StableDiffusionInstructPix2PixPipeline.from_pretrained(run.pipeline_dir)

    assert pipeline.unet.config.in_channels == 8


def test_base_and_finetuned_are_compared_by_the_active_reward_model(
    judged_project, tiny_version
):
    version = tiny_version(judged_project)

    run = _run(judged_project, evaluate=True)

    evaluation = run.evaluation
    assert evaluation["tasks"] == len(evaluation_tasks(judged_project)) >= 1
    assert evaluation["reward_version"] == version.pk
    assert evaluation["reward_version_random_init"] is True
    assert evaluation["base"] == "tiny: the seeded tiny random-init editor"
    assert 0.0 <= evaluation["win_rate"] <= 1.0
    assert set(evaluation["mean_reward"]["base"]) == {
        "overall", "following", "preserving", "quality"
    }
    assert "win rate" in run.message


def test_without_a_reward_model_the_evaluation_says_so(judged_project):
    run = _run(judged_project, evaluate=True)

    assert run.status == "succeeded"
    assert "no active reward model" in run.evaluation["note"]


def test_an_ab_batch_puts_base_and_finetuned_side_by_side_for_people(
    judged_project, annotator
):
    Membership.objects.create(project=judged_project, user=annotator)

    run = _run(judged_project, evaluate=True, ab_batch=True)

    ab = run.ab_project
    assert ab.pk == run.evaluation["ab_project"] and ab.mode == "pairwise"
    assert ab.memberships.filter(user=annotator).exists()
    tasks = list(EditTask.objects.filter(project=ab))
    assert 1 <= len(tasks) <= 2
    for task in tasks:
        editors = sorted(task.variants.values_list("params__editor", flat=True))
        assert editors == ["base", "finetuned"]
    assert lease_next_task(ab, annotator) is not None


def test_too_little_feedback_skips_the_run_saying_what_it_needs(procedural_project, settings):
    settings.FINETUNE_MIN_EXAMPLES = 50
    project = procedural_project(tasks=4, overlap=1)
    fill_with_simulated_judgements(project, 2, annotators=1, seed=1)

    run = _run(project, "dpo")

    assert run.status == "skipped"
    assert "at least 50 chosen/rejected pairs" in run.message


def test_a_cancel_keeps_a_checkpoint_and_the_requeued_run_resumes_from_it(
    judged_project, monkeypatch
):
    monkeypatch.setattr(finetune_runs, "REPORT_EVERY_SECONDS", 0.0)
    reporter = finetune_runs.StepReporter.__call__

    def cancel_at_step_3(self, report):
        if report.step == 3:  # as if somebody pressed cancel in the admin just then
            FinetuneRun.objects.filter(pk=self.run.pk).update(cancel_requested=True)
        reporter(self, report)

    monkeypatch.setattr(finetune_runs.StepReporter, "__call__", cancel_at_step_3)
    run = scheduling.request_finetune(
        judged_project, method="supervised", options={**QUICK, "max_steps": 6},
        evaluate=False, enqueue=False,
    )

    execute(run)

    run.refresh_from_db()
    assert run.status == "cancelled" and "checkpoints kept" in run.message
    assert "checkpoint-3" in [p.name for p in run.work_dir.glob("checkpoint-*")]

    monkeypatch.setattr(finetune_runs.StepReporter, "__call__", reporter)
    FinetuneRun.objects.filter(pk=run.pk).update(status="pending", cancel_requested=False)
    execute(run)

    run.refresh_from_db()
    assert run.status == "succeeded", run.message
    assert run.result["resumed_from"] == 3 and run.step == 6
    assert run.attempts == 2
    assert [p["step"] for p in run.loss_curve] == [1, 2, 3, 4, 5, 6]


def test_compare_scores_counts_ties_as_half_a_win():
    base = [
        {"overall": 1.0, "aspects": {"quality": 2.0}},
        {"overall": 0.0, "aspects": {"quality": 4.0}},
        {"overall": 3.0, "aspects": {"quality": 3.0}},
    ]
    tuned = [
        {"overall": 2.0, "aspects": {"quality": 4.0}},
        {"overall": 0.0, "aspects": {"quality": 4.0}},
        {"overall": 1.0, "aspects": {"quality": 1.0}},
    ]

    result = compare_scores(base, tuned)

    assert result["win_rate"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert result["mean_reward"]["base"] == {"overall": pytest.approx(4 / 3), "quality": 3.0}
    assert result["mean_reward"]["finetuned"]["quality"] == pytest.approx(3.0)
