"""Thin Celery tasks for quality control."""

from celery import shared_task

from evaluation.quality import projects_with_quality_checks, run_quality_check


@shared_task(name="evaluation.quality_checks")
def quality_checks() -> dict[int, str]:
    """Beat (editable in the admin): every project with a quality threshold set."""
    return {
        project.pk: run_quality_check(project).summary()
        for project in projects_with_quality_checks()
    }
