"""Simulated annotators for the demo's procedural edits, through the people's code path.

Each procedural variant knows its true quality (``params["truth"]``, training/procedural.py).
A simulated annotator leases tasks with ``lease_next_task`` and submits with
``submit_judgement`` exactly as the browser does; only the ranking and scores come from
evaluation/simulated_annotators.py instead of a person. Their judgements are marked ``simulated`` so
the admin shows them and exports can leave them out.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable

from django.contrib.auth.models import User
from django.db import transaction

from annotation.assignment import AnnotatorPaused, lease_next_task
from annotation.judgements import submit_judgement
from annotation.models import Assignment, Membership, Project, Variant
from evaluation.simulated_annotators import SimulatedAnnotator, simulate

USERNAME_PREFIX = "simulated-"


class NoKnownTruth(Exception):
    """The task's variants were not made by the procedural editor."""


def simulated_users(
    project: Project, count: int, prefix: str = USERNAME_PREFIX
) -> list[User]:
    """``count`` simulated annotator accounts (no usable password), members of the project."""
    users = []
    for number in range(1, count + 1):
        user, created = User.objects.get_or_create(username=f"{prefix}{number}")
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        Membership.objects.get_or_create(project=project, user=user)
        users.append(user)
    return users


def fill_with_simulated_judgements(
    project: Project,
    judgements: int,
    *,
    annotators: int = 5,
    noise: float = 0.6,
    disagreement: float = 0.4,
    seed: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Submit up to ``judgements`` simulated judgements; returns how many were made (fewer
    when the annotators run out of tasks they may take)."""
    rng = random.Random(seed)
    users = simulated_users(project, annotators)
    people = {
        user.pk: SimulatedAnnotator.sample(rng, noise=noise, disagreement=disagreement)
        for user in users
    }
    made, idle = 0, 0
    while made < judgements and idle < len(users):
        user = users[made % len(users)] if idle == 0 else rng.choice(users)
        try:
            assignment = lease_next_task(project, user, rng=rng)
        except AnnotatorPaused:
            assignment = None
        if assignment is None:
            idle += 1
            users.remove(user)
            continue
        idle = 0
        judge_as(assignment, user, people[user.pk], rng)
        made += 1
        if on_progress:
            on_progress(made)
    return made


def judge_as(
    assignment: Assignment, user: User, person: SimulatedAnnotator, rng: random.Random
) -> int:
    """Judge one leased assignment as the simulated ``person``; returns the judgement id."""
    truths = _truths(assignment)
    ranking, scores, unsure = simulate(truths, person, rng)
    payload = {
        "client_id": str(uuid.uuid4()),
        "ranking": ranking,
        "unsure": unsure,
        "scores": {str(variant): values for variant, values in scores.items()},
        "notes": {},
        "timings_ms": _timings(rng),
    }
    with transaction.atomic():
        judgement, _ = submit_judgement(assignment.pk, user, payload, simulated=True)
    return judgement.pk


def _truths(assignment: Assignment) -> dict[int, dict[str, int]]:
    truths = {}
    for variant in Variant.objects.filter(task_id=assignment.task_id).only("id", "params"):
        truth = (variant.params or {}).get("truth")
        if not truth:
            raise NoKnownTruth(
                f"variant {variant.pk} of task {assignment.task_id} has no params.truth: "
                "simulated annotators judge only the procedural editor's variants"
            )
        truths[variant.pk] = truth
    return truths


def _timings(rng: random.Random) -> dict[str, int]:
    ranking, scoring = rng.randint(3000, 15000), rng.randint(5000, 25000)
    return {"ranking": ranking, "scoring": scoring, "total": ranking + scoring + 1000}
