"""Which judgements a reward model learns from, and the fingerprint of that snapshot."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.db.models import QuerySet

from annotation.models import Judgement, Project


def training_judgements(project: Project, *, include_simulated: bool = True) -> QuerySet:
    """Every judgement of the project's regular (non-gold) tasks, oldest first."""
    judgements = Judgement.objects.filter(
        assignment__task__project=project, assignment__task__is_gold=False
    )
    if not include_simulated:
        judgements = judgements.filter(simulated=False)
    return judgements.order_by("id")


def dataset_hash(judgement_ids: Iterable[int]) -> str:
    """The exact snapshot a version was trained on, as one comparable value."""
    joined = ",".join(str(pk) for pk in sorted(judgement_ids))
    return hashlib.sha256(joined.encode()).hexdigest()
