"""Quality control over a project's judgements: the agreement report, flagging (and
optionally pausing) annotators who fall below the project's thresholds, and the
disagreement queue (disputed tasks get extra judgements).

Django glue around evaluation/agreement.py, which holds the formulas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from annotation.models import EditTask, Judgement, Membership, Project
from evaluation.agreement import JudgementRow, annotator_quality, project_report, task_agreement


def judgement_rows(project: Project, *, include_simulated: bool = True) -> list[JudgementRow]:
    """Every judgement of the project as a plain row, oldest first."""
    judgements = Judgement.objects.filter(assignment__task__project=project)
    if not include_simulated:
        judgements = judgements.filter(simulated=False)
    values = judgements.order_by("id").values_list(
        "id",
        "assignment__task_id",
        "assignment__annotator_id",
        "ranking",
        "scores",
        "assignment__display_order",
        "ranking_ms",
        "scoring_ms",
        "total_ms",
        "assignment__task__gold_ranking",
        "assignment__task__is_gold",
        "unsure",
    )
    return [
        JudgementRow(
            judgement_id=pk,
            task_id=task,
            annotator_id=annotator,
            ranking=ranking,
            scores={int(variant): aspects for variant, aspects in scores.items()},
            display_order=display_order or [],
            ranking_ms=ranking_ms,
            scoring_ms=scoring_ms,
            total_ms=total_ms,
            gold_ranking=gold if is_gold else None,
            unsure=unsure,
        )
        for (
            pk, task, annotator, ranking, scores, display_order, ranking_ms, scoring_ms,
            total_ms, gold, is_gold, unsure,
        ) in values
    ]


def quality_report(project: Project, *, include_simulated: bool = True) -> dict:
    """The project's agreement report (JSON-ready), annotators named."""
    rows = judgement_rows(project, include_simulated=include_simulated)
    report = project_report(rows, project.aspect_keys, min_items=project.qc_min_items)
    names = dict(project.members.values_list("id", "username"))
    for annotator_id, figures in report["by_annotator"].items():
        figures["username"] = names.get(int(annotator_id), f"user {annotator_id}")
    return report


# --- the quality check --------------------------------------------------------------------


@dataclass
class QualityCheck:
    flagged: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    disputed_tasks: list[int] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"flagged {len(self.flagged)} {self.flagged or ''}, cleared {len(self.cleared)}, "
            f"paused {len(self.paused)}, {len(self.disputed_tasks)} disputed task(s) sent back "
            "for extra judgements"
        ).replace(" []", "")


def shortfalls(project: Project, figures: dict) -> list[str]:
    """Why an annotator's figures fall below the project's thresholds (empty: they don't)."""
    reasons = []
    checks = (
        ("gold accuracy", figures.get("gold_accuracy"), project.qc_min_gold_accuracy),
        ("agreement", figures.get("agreement"), project.qc_min_agreement),
    )
    for name, value, threshold in checks:
        if threshold is not None and value is not None and value < threshold:
            reasons.append(f"{name} {value:.2f} < {threshold:.2f}")
    return reasons


def run_quality_check(project: Project) -> QualityCheck:
    """Flag, clear and (if the project says so) pause annotators; queue disputed tasks."""
    rows = judgement_rows(project)
    outcome = QualityCheck()
    quality = annotator_quality(rows, project.qc_min_items)
    with transaction.atomic():
        for membership in _annotators(project):
            figures = quality.get(membership.user_id, {})
            _apply_flag(project, membership, shortfalls(project, figures), outcome)
        outcome.disputed_tasks = queue_disputed_tasks(project, task_agreement(rows))
    return outcome


def _annotators(project: Project) -> QuerySet[Membership]:
    return (
        Membership.objects.select_for_update()
        .filter(project=project, role=Membership.Role.ANNOTATOR)
        .select_related("user")
    )


def _apply_flag(
    project: Project, membership: Membership, reasons: list[str], outcome: QualityCheck
) -> None:
    name = membership.user.username
    before = (membership.flagged_at, membership.flag_reason, membership.paused)
    if reasons:
        membership.flag_reason = "; ".join(reasons)[:300]
        if membership.flagged_at is None:
            membership.flagged_at = timezone.now()
            outcome.flagged.append(name)
        if project.qc_pause_flagged and not membership.paused:
            membership.paused = True
            outcome.paused.append(name)
    elif membership.flagged_at is not None and not membership.paused:
        # Recovered: a paused annotator stays paused until a manager resumes them.
        membership.flagged_at, membership.flag_reason = None, ""
        outcome.cleared.append(name)
    if (membership.flagged_at, membership.flag_reason, membership.paused) != before:
        membership.save(update_fields=["flagged_at", "flag_reason", "paused"])


def queue_disputed_tasks(project: Project, agreement: dict[int, float]) -> list[int]:
    """Complete tasks whose annotators agree less than the threshold get
    ``disagreement_extra`` more judgements (once: a task already extended stays so)."""
    threshold = project.disagreement_threshold
    if threshold is None:
        return []
    disputed = [task for task, value in agreement.items() if value < threshold]
    candidates = EditTask.objects.filter(
        project=project,
        pk__in=disputed,
        is_gold=False,
        extra_judgements=0,
        judgement_count__gte=project.overlap,
    )
    chosen = list(candidates.values_list("pk", flat=True))
    EditTask.objects.filter(pk__in=chosen).update(extra_judgements=project.disagreement_extra)
    return sorted(chosen)


def projects_with_quality_checks() -> QuerySet[Project]:
    return Project.objects.filter(
        Q(qc_min_gold_accuracy__isnull=False)
        | Q(qc_min_agreement__isnull=False)
        | Q(disagreement_threshold__isnull=False)
    )


def resume(memberships: QuerySet[Membership]) -> int:
    """A manager lets paused annotators work again (their flag stays until figures recover)."""
    return memberships.filter(paused=True).update(paused=False)

