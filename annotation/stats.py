"""Progress and per-annotator figures, computed in SQL."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import Aggregate, Count, Exists, F, FloatField, OuterRef, Q
from django.utils import timezone

from annotation.models import Assignment, Judgement, Project


class Median(Aggregate):
    function = "percentile_cont"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


def progress_for_annotator(project: Project, user: User) -> dict:
    """The caller's figures for one project, in two queries (the queue page shows many)."""
    had_it = Exists(Assignment.objects.filter(task=OuterRef("pk"), annotator=user))
    open_task = Q(judgement_count__lt=project.overlap)
    tasks = project.tasks.filter(is_gold=False).aggregate(
        tasks=Count("pk"),
        complete=Count("pk", filter=~open_task),
        open_for_me=Count("pk", filter=open_task & ~Q(had_it)),
    )
    mine = Assignment.objects.filter(task__project=project, annotator=user).aggregate(
        judged_by_me=Count("pk", filter=Q(status=Assignment.Status.SUBMITTED)),
        skipped_by_me=Count("pk", filter=Q(status=Assignment.Status.SKIPPED)),
    )
    return {**tasks, **mine}


def project_stats(project: Project) -> dict:
    now = timezone.now()
    tasks = project.tasks.aggregate(
        tasks=Count("pk", filter=Q(is_gold=False)),
        gold_tasks=Count("pk", filter=Q(is_gold=True)),
        complete=Count("pk", filter=Q(is_gold=False, judgement_count__gte=project.overlap)),
    )
    assignments = Assignment.objects.filter(task__project=project).aggregate(
        judgements=Count("pk", filter=Q(status=Assignment.Status.SUBMITTED)),
        skipped=Count("pk", filter=Q(status=Assignment.Status.SKIPPED)),
        leased_now=Count("pk", filter=Q(status=Assignment.Status.LEASED, expires_at__gt=now)),
    )
    by_split = dict(
        project.tasks.filter(is_gold=False)
        .values_list("split")
        .annotate(n=Count("pk"))
        .values_list("split", "n")
    )
    return {
        "project": project.pk,
        "overlap": project.overlap,
        **tasks,
        **assignments,
        "tasks_by_split": by_split,
        "annotators": annotator_figures(project),
        "agreement": agreement_figures(project),
    }


def agreement_figures(project: Project) -> dict:
    """Agreement, gold accuracy, position bias and per-annotator quality (by username)."""
    from evaluation.quality import quality_report

    report = quality_report(project)
    report["by_annotator"] = {
        figures.pop("username"): figures for figures in report["by_annotator"].values()
    }
    return report


def annotator_figures(project: Project) -> list[dict]:
    judged = (
        Judgement.objects.filter(assignment__task__project=project)
        .values(username=F("assignment__annotator__username"))
        .annotate(
            judgements=Count("pk"),
            unsure=Count("pk", filter=Q(unsure=True)),
            median_total_ms=Median("total_ms"),
            median_ranking_ms=Median("ranking_ms"),
            median_scoring_ms=Median("scoring_ms"),
        )
        .order_by("username")
    )
    skipped = dict(
        Assignment.objects.filter(task__project=project, status=Assignment.Status.SKIPPED)
        .values_list("annotator__username")
        .annotate(n=Count("pk"))
        .values_list("annotator__username", "n")
    )
    rows = {row["username"]: {**row, "skipped": skipped.get(row["username"], 0)} for row in judged}
    for username, count in skipped.items():
        rows.setdefault(
            username,
            {
                "username": username,
                "judgements": 0,
                "unsure": 0,
                "median_total_ms": None,
                "median_ranking_ms": None,
                "median_scoring_ms": None,
                "skipped": count,
            },
        )
    return sorted(rows.values(), key=lambda row: row["username"])
