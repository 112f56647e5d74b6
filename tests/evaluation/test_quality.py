"""Quality control against the real database: flag and pause annotators below the project's
thresholds, resume, and send disputed tasks back for an extra judgement."""

import uuid

import pytest

from annotation.assignment import AnnotatorPaused, lease_next_task
from annotation.judgements import submit_judgement
from annotation.models import EditTask, Membership, Variant
from evaluation.quality import judgement_rows, quality_report, run_quality_check
from evaluation.tasks import quality_checks
from tests.conftest import client_for, make_user


def judge_task(project, user, task, order):
    """Lease ``task`` for ``user`` (it must be the next one) and rank its variants in
    ``order`` (indices into the task's variants by id), one variant per tier."""
    assignment = lease_next_task(project, user)
    assert assignment.task_id == task.pk
    ids = sorted(Variant.objects.filter(task=task).values_list("id", flat=True))
    payload = {
        "client_id": str(uuid.uuid4()),
        "ranking": [[ids[i]] for i in order],
        "scores": {str(v): {"following": 3, "preserving": 3, "quality": 3} for v in ids},
        "timings_ms": {"ranking": 1000, "scoring": 2000, "total": 3500},
    }
    submit_judgement(assignment.pk, user, payload)
    return ids


@pytest.fixture
def gold_project(project):
    """The shared 3-task project: task 0 is gold (best→worst = variants 0, 1, 2, 3)."""
    first = EditTask.objects.filter(project=project).order_by("id").first()
    ids = sorted(first.variants.values_list("id", flat=True))
    first.is_gold, first.gold_ranking = True, [[i] for i in ids]
    first.save(update_fields=["is_gold", "gold_ranking"])
    project.gold_rate = 1.0
    project.qc_min_gold_accuracy, project.qc_min_items = 0.5, 1
    project.save()
    return project


def gold_task(project) -> EditTask:
    return EditTask.objects.get(project=project, is_gold=True)


def test_rows_carry_display_order_timings_and_gold_answers(gold_project, annotator):
    judge_task(gold_project, annotator, gold_task(gold_project), [3, 2, 1, 0])

    (row,) = judgement_rows(gold_project)

    assert row.annotator_id == annotator.pk
    assert row.gold_ranking == gold_task(gold_project).gold_ranking
    assert sorted(row.display_order) == sorted(v for tier in row.ranking for v in tier)
    assert (row.ranking_ms, row.scoring_ms, row.total_ms) == (1000, 2000, 3500)
    assert all(isinstance(variant, int) for variant in row.scores)


def test_an_annotator_below_the_gold_threshold_is_flagged_and_cleared_on_recovery(
    gold_project, annotator, other_annotator
):
    judge_task(gold_project, annotator, gold_task(gold_project), [3, 2, 1, 0])  # all wrong
    judge_task(gold_project, other_annotator, gold_task(gold_project), [0, 1, 2, 3])

    outcome = run_quality_check(gold_project)

    assert outcome.flagged == ["annotator"]
    flagged = Membership.objects.get(project=gold_project, user=annotator)
    assert flagged.flagged_at is not None
    assert flagged.flag_reason == "gold accuracy 0.00 < 0.50"
    assert not flagged.paused  # the project does not pause
    assert lease_next_task(gold_project, annotator) is not None  # still gets work

    gold_project.qc_min_gold_accuracy = None  # the manager drops the threshold
    gold_project.save()
    assert run_quality_check(gold_project).cleared == ["annotator"]
    assert Membership.objects.get(project=gold_project, user=annotator).flagged_at is None


def test_a_paused_annotator_gets_no_tasks_and_is_told_why(gold_project, annotator):
    gold_project.qc_pause_flagged = True
    gold_project.save()
    judge_task(gold_project, annotator, gold_task(gold_project), [3, 2, 1, 0])

    assert run_quality_check(gold_project).paused == ["annotator"]

    with pytest.raises(AnnotatorPaused):
        lease_next_task(gold_project, annotator)
    response = client_for(annotator).post(f"/api/v1/projects/{gold_project.pk}/next/")
    assert response.status_code == 403
    assert response.json()["paused"] is True
    assert "gold accuracy 0.00 < 0.50" in response.json()["detail"]

    # Still below the threshold: the next check neither clears nor resumes them ...
    run_quality_check(gold_project)
    membership = Membership.objects.get(project=gold_project, user=annotator)
    assert membership.paused and membership.flagged_at is not None
    # ... until a manager resumes them.
    Membership.objects.filter(pk=membership.pk).update(paused=False)
    assert (
        client_for(annotator).post(f"/api/v1/projects/{gold_project.pk}/next/").status_code == 200
    )


def test_a_disputed_task_gets_an_extra_judgement(project, annotator, other_annotator):
    third = make_user("third")
    Membership.objects.create(project=project, user=third)
    project.disagreement_threshold = 0.5
    project.save()
    task = EditTask.objects.filter(project=project).order_by("id").first()
    task.priority = 10  # served first to everyone
    task.save(update_fields=["priority"])
    judge_task(project, annotator, task, [0, 1, 2, 3])
    judge_task(project, other_annotator, task, [3, 2, 1, 0])  # agree on no pair

    outcome = run_quality_check(project)

    assert outcome.disputed_tasks == [task.pk]
    task.refresh_from_db()
    assert task.extra_judgements == 1
    assert lease_next_task(project, third).task_id == task.pk  # a third opinion
    # Only one extra: a second check does not extend it again.
    assert run_quality_check(project).disputed_tasks == []


def test_without_the_extra_a_complete_task_is_not_served_again(project, annotator, other_annotator):
    third = make_user("third")
    Membership.objects.create(project=project, user=third)
    task = EditTask.objects.filter(project=project).order_by("id").first()
    task.priority = 10
    task.save(update_fields=["priority"])
    judge_task(project, annotator, task, [0, 1, 2, 3])
    judge_task(project, other_annotator, task, [3, 2, 1, 0])

    assert run_quality_check(project).disputed_tasks == []  # no threshold set
    assert lease_next_task(project, third).task_id != task.pk


def test_agreeing_annotators_leave_the_task_alone(project, annotator, other_annotator):
    project.disagreement_threshold = 0.5
    project.save()
    task = EditTask.objects.filter(project=project).order_by("id").first()
    task.priority = 10
    task.save(update_fields=["priority"])
    judge_task(project, annotator, task, [0, 1, 2, 3])
    judge_task(project, other_annotator, task, [0, 1, 3, 2])  # 5 of 6 pairs agree

    assert run_quality_check(project).disputed_tasks == []


def test_the_report_names_annotators_and_is_json_ready(gold_project, annotator):
    judge_task(gold_project, annotator, gold_task(gold_project), [0, 1, 2, 3])

    report = quality_report(gold_project)

    assert report["gold"]["accuracy"] == 1.0
    assert report["by_annotator"][str(annotator.pk)]["username"] == "annotator"


def test_the_scheduled_check_covers_projects_with_a_threshold(gold_project, annotator):
    judge_task(gold_project, annotator, gold_task(gold_project), [3, 2, 1, 0])

    results = quality_checks()

    assert list(results) == [gold_project.pk]
    assert "flagged 1" in results[gold_project.pk]


def test_the_admin_action_runs_the_check_and_links_the_dashboard(
    gold_project, annotator, admin_client
):
    judge_task(gold_project, annotator, gold_task(gold_project), [3, 2, 1, 0])

    response = admin_client.post(
        "/admin/annotation/project/",
        {"action": "run_quality_check_now", "_selected_action": [gold_project.pk]},
        follow=True,
    )

    assert "flagged 1" in response.content.decode()
    assert f"/projects/{gold_project.pk}/dashboard/" in response.content.decode()
    assert Membership.objects.get(project=gold_project, user=annotator).flagged_at is not None
