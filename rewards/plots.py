"""Reward-model plots (admin pages, the project dashboard): a run's loss and validation
curves, and every version against the human ceiling."""

from __future__ import annotations

from editloop import charts
from rewards.models import RewardModelVersion, RewardTrainingRun


def loss_chart(run: RewardTrainingRun) -> str:
    curve = [(point["step"], point["loss"]) for point in run.loss_curve if point.get("loss")]
    series = [charts.Series("training loss", curve)]
    val = [(p["step"], p["accuracy"]) for p in run.val_curve if p.get("accuracy") is not None]
    chart = charts.Chart(f"Run {run.pk}: loss", "step", "loss", series)
    svg = charts.render(chart)
    if val:
        svg += charts.render(
            charts.Chart(
                "Validation pairwise accuracy",
                "step",
                "accuracy",
                [charts.Series("val accuracy", val)],
                y_range=(0.0, 1.0),
            )
        )
    return svg


def versions_chart(versions: list[RewardModelVersion], title: str) -> str:
    """Each version's test and val pairwise accuracy beside the human ceiling."""
    ordered = sorted(versions, key=lambda v: v.number)

    def metric(split: str, key: str) -> list[tuple[float, float]]:
        found = []
        for version in ordered:
            values = version.metrics.get(split, {})
            value = values.get(key) if key != "ceiling" else version.ceiling(split)
            if value is not None:
                found.append((version.number, value))
        return found

    series = [
        charts.Series("test accuracy", metric("test", "pairwise_accuracy")),
        charts.Series("val accuracy", metric("val", "pairwise_accuracy")),
        charts.Series("human ceiling (test)", metric("test", "ceiling"), dashed=True),
        charts.Series("test ROC-AUC", metric("test", "roc_auc")),
    ]
    return charts.render(
        charts.Chart(title, "version", "pairwise accuracy / AUC", series, y_range=(0.0, 1.0))
    )
