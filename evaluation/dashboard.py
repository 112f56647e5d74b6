"""The project dashboard's figures, each section a title, an SVG plot and (sometimes) a
table: progress over time, judgements per annotator, agreement per aspect, score
distributions per aspect and generator, time per task, reward-model versions against the
human ceiling, fine-tune runs, and the quality-control view of every annotator."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from django.db.models import Count, Max, Min
from django.db.models.functions import TruncHour, TruncMinute
from django.utils.safestring import SafeString, mark_safe

from annotation.models import AspectScore, Judgement, Membership, Project
from annotation.stats import annotator_figures
from editloop import charts
from evaluation.quality import quality_report
from rewards.plots import versions_chart

if TYPE_CHECKING:
    from rewards.models import RewardModelVersion

TIME_BUCKETS_S = (5, 10, 20, 30, 60, 120)


@dataclass
class Section:
    title: str
    plots: list[SafeString] = field(default_factory=list)
    table: list[dict] | None = None
    note: str = ""


def svg(markup: str) -> SafeString:
    return mark_safe(markup)  # safe: editloop.charts escapes every label


def project_dashboard(project: Project) -> list[Section]:
    report = quality_report(project)
    return [
        progress_section(project),
        annotators_section(project, report),
        agreement_section(project, report),
        scores_section(project),
        time_section(project),
        reward_models_section(project),
        finetune_section(project),
    ]


def progress_section(project: Project) -> Section:
    """Judgements so far against what the tasks need, minute by minute for a young project
    and hour by hour after that."""
    judgements = Judgement.objects.filter(assignment__task__project=project)
    span = judgements.aggregate(first=Min("created_at"), last=Max("created_at"))
    points, total = [(0.0, 0)], 0
    if span["first"] is not None:
        hourly = span["last"] - span["first"] > timedelta(hours=6)
        bucket = TruncHour if hourly else TruncMinute
        rows = judgements.annotate(at=bucket("created_at")).values("at").annotate(n=Count("pk"))
        for row in rows.order_by("at"):
            total += row["n"]
            hours = (row["at"] - span["first"]).total_seconds() / 3600
            points.append((max(hours, 0.0) + (1 if hourly else 1 / 60), total))
    needed = project.tasks.filter(is_gold=False).count() * project.overlap
    series = [
        charts.Series("judgements", points),
        charts.Series("needed", [(0, needed), (points[-1][0], needed)], dashed=True),
    ]
    plot = charts.render(charts.Chart("Progress", "hours since the first judgement",
                                      "judgements", series))
    return Section("Progress over time", [svg(plot)], note=f"{total} of {needed} judgements")


def annotators_section(project: Project, report: dict) -> Section:
    figures = annotator_figures(project)
    bars = charts.Bars("Judgements per annotator", "judgements",
                       [(row["username"], row["judgements"]) for row in figures])
    quality = {row["username"]: row for row in report["by_annotator"].values()}
    members = Membership.objects.filter(project=project).select_related("user")
    flags = {membership.user.username: membership for membership in members}
    table = [
        {
            "annotator": row["username"],
            "judgements": row["judgements"],
            "skipped": row["skipped"],
            "gold accuracy": _fmt(quality.get(row["username"], {}).get("gold_accuracy")),
            "agreement": _fmt(quality.get(row["username"], {}).get("agreement")),
            "Kendall τ-b": _fmt(quality.get(row["username"], {}).get("kendall_tau_b")),
            "median s / task": _seconds(row["median_total_ms"]),
            "quality control": _flag_text(flags.get(row["username"])),
        }
        for row in figures
    ]
    return Section("Annotators", [svg(charts.render_bars(bars))], table)


def agreement_section(project: Project, report: dict) -> Section:
    alpha = report["scores"]["alpha_ordinal"]
    ranking = report["ranking"]
    bars = [(f"{aspect} (α ordinal)", value) for aspect, value in alpha.items()]
    bars += [
        ("ranking: pairwise agreement", ranking["pairwise_agreement"]),
        ("ranking: Kendall τ-b", ranking["kendall_tau_b"]),
    ]
    plot = charts.render_bars(charts.Bars("Agreement between annotators", "agreement",
                                          bars, max_value=1.0))
    bias = report["position_bias"]
    note = (
        f"Gold accuracy {_fmt(report['gold']['accuracy'])} over {report['gold']['judgements']} "
        f"gold judgements. Position bias: the first-shown variant is ranked best in "
        f"{_fmt(bias.get('first_shown_wins'))} of judgements (chance {_fmt(bias.get('chance'))})."
    )
    disputed = [
        {"task": row["task_id"], "agreement": _fmt(row["agreement"])}
        for row in report["disputed_tasks"][:10]
    ]
    return Section("Agreement per aspect", [svg(plot)], disputed or None, note)


def scores_section(project: Project) -> Section:
    """For each aspect, the share of each 0–5 score, one line per generator."""
    counts: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    rows = (
        AspectScore.objects.filter(variant__task__project=project)
        .values_list("aspect", "variant__generator", "value")
        .annotate(n=Count("pk"))
    )
    for aspect, generator, value, n in rows:
        counts[aspect][generator or "unnamed"][value] += n
    plots = []
    for aspect in project.aspect_keys:
        series = [
            charts.Series(generator, [(v, by_value[v] / sum(by_value.values())) for v in range(6)])
            for generator, by_value in sorted(counts[aspect].items())
        ]
        plots.append(svg(charts.render(charts.Chart(
            f"Scores for {aspect}, by generator", "score (0–5)", "share of scores", series,
            y_range=(0.0, 1.0), width=520,
        ))))
    return Section("Score distributions", plots)


def time_section(project: Project) -> Section:
    totals = Judgement.objects.filter(
        assignment__task__project=project, total_ms__isnull=False
    ).values_list("total_ms", flat=True)
    buckets = Counter(_bucket(ms / 1000) for ms in totals.iterator())
    labels = [f"under {limit} s" for limit in TIME_BUCKETS_S] + [f"{TIME_BUCKETS_S[-1]} s or more"]
    plot = charts.render_bars(charts.Bars("Time per task", "judgements",
                                          [(label, buckets[label]) for label in labels]))
    return Section("Time per task", [svg(plot)])


def _bucket(seconds: float) -> str:
    for limit in TIME_BUCKETS_S:
        if seconds < limit:
            return f"under {limit} s"
    return f"{TIME_BUCKETS_S[-1]} s or more"


def reward_models_section(project: Project) -> Section:
    """Each version's test accuracy, and the model beside the annotators on the same items:
    the ceiling exists only for tasks judged twice or more, so the model's figure on those
    tasks is the one to hold against it (its figure on every test task is shown apart)."""
    versions = list(project.reward_models.all())
    table = [
        {
            "version": f"v{v.number}" + (" (tiny random-init)" if v.is_random_init else ""),
            "status": v.status,
            "test accuracy (all test judgements)": _fmt(v.headline("test")),
            "model on the ceiling's items": _fmt(_on_ceiling_items(v)),
            "human ceiling": _fmt(v.ceiling("test")),
            "ceiling tasks": _ceiling_tasks(v),
            "promotion (val)": _promotion(v),
            "created": v.created_at.strftime("%Y-%m-%d %H:%M"),
        }
        for v in versions
    ]
    plot = versions_chart(versions, "Reward model versions against the human ceiling")
    note = (
        "Model and annotators are compared on the same test items (tasks with two or more "
        "judgements); versions are promoted on val, test is reported only."
    )
    return Section("Reward model", [svg(plot)], table or None, note if table else "")


def _on_ceiling_items(version: RewardModelVersion) -> float | None:
    same_items = version.metrics.get("test", {}).get("ceiling_items") or {}
    return same_items.get("pairwise_accuracy")


def _ceiling_tasks(version: RewardModelVersion) -> str:
    ceiling = version.metrics.get("test", {}).get("human_ceiling") or {}
    return "—" if ceiling.get("tasks") is None else str(ceiling["tasks"])


def _promotion(version: RewardModelVersion) -> str:
    """The val comparison that decided it: "0.612 vs v1 0.580", or why there was none."""
    versus = version.metrics.get("versus_active")
    if not versus:
        return "first version" if version.parent_id is None else "—"
    split = versus.get("split", "test")  # versions from before issue 11 compared on test
    mine, theirs = _fmt(versus.get("candidate")), _fmt(versus.get("active"))
    return f"{split}: {mine} vs v{versus['against_version']} {theirs}"


def finetune_section(project: Project) -> Section:
    runs = list(project.finetune_runs.order_by("pk"))
    bars = [
        (f"run {run.pk} ({run.method})", run.evaluation.get("win_rate"))
        for run in runs
        if run.evaluation.get("win_rate") is not None
    ]
    plot = charts.render_bars(charts.Bars(
        "Fine-tuned editor: reward-model win rate against its base", "win rate", bars,
        max_value=1.0,
    ))
    table = [
        {
            "run": run.pk,
            "method": run.method + (" (tiny random-init)" if run.is_random_init else ""),
            "status": run.status,
            "steps": run.step,
            "final loss": _fmt(run.current_loss),
            "win rate": _fmt(run.evaluation.get("win_rate")),
        }
        for run in runs
    ]
    return Section("Editor fine-tuning", [svg(plot)], table or None)


def _flag_text(membership: Membership | None) -> str:
    if membership is None or membership.flagged_at is None:
        return "paused" if membership is not None and membership.paused else ""
    state = "paused" if membership.paused else "flagged"
    return f"{state}: {membership.flag_reason}"


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _seconds(milliseconds: float | None) -> str:
    return "—" if milliseconds is None else f"{milliseconds / 1000:.1f}"
