"""Simulated annotators judge through the same code path as people."""

import pytest

from annotation.models import Judgement, Membership
from evaluation.simulated_judgements import (
    NoKnownTruth,
    fill_with_simulated_judgements,
    simulated_users,
)


def test_simulated_judgements_are_saved_like_peoples_and_marked(procedural_project):
    project = procedural_project(tasks=6, overlap=3)

    made = fill_with_simulated_judgements(project, 10, annotators=3, seed=1)

    judgements = Judgement.objects.filter(assignment__task__project=project)
    assert made == 10 == judgements.count()
    assert all(j.simulated for j in judgements)
    assert all(j.assignment.status == "submitted" for j in judgements)
    # Aspect rows are written too, one per variant and aspect.
    first = judgements.first()
    assert first.aspect_scores.count() == 4 * len(project.aspect_keys)


def test_they_respect_overlap_and_never_judge_a_task_twice(procedural_project):
    project = procedural_project(tasks=4, overlap=2)

    made = fill_with_simulated_judgements(project, 100, annotators=3, seed=2)

    assert made == 4 * 2  # every slot filled, then they run out of work
    for task in project.tasks.all():
        annotators = list(task.assignments.values_list("annotator", flat=True))
        assert len(annotators) == task.judgement_count == 2
        assert len(set(annotators)) == 2


def test_their_rankings_follow_the_known_truth(procedural_project):
    project = procedural_project(tasks=8, overlap=3)
    fill_with_simulated_judgements(project, 24, annotators=3, noise=0.3, seed=3)

    agree = total = 0
    for judgement in Judgement.objects.filter(assignment__task__project=project):
        truth = {
            v.pk: sum(v.params["truth"].values()) for v in judgement.assignment.task.variants.all()
        }
        best_tier = judgement.ranking[0]
        best_true = max(truth.values())
        agree += any(truth[v] == best_true for v in best_tier)
        total += 1
    assert agree / total >= 0.6


def test_simulated_accounts_cannot_log_in(procedural_project):
    project = procedural_project(tasks=2)

    users = simulated_users(project, 2)

    assert all(not user.has_usable_password() for user in users)
    assert Membership.objects.filter(project=project, user__in=users).count() == 2


def test_they_refuse_tasks_without_known_truth(project):
    with pytest.raises(NoKnownTruth, match="params.truth"):
        fill_with_simulated_judgements(project, 1, annotators=1)
    assert not Judgement.objects.filter(assignment__task__project=project).exists()
