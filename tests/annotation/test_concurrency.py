"""Many annotators at once against the real Postgres: never more than k judgements per task,
never the same annotator twice, even with leases expiring mid-flight."""

import random
import threading
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotation.assignment import lease_next_task
from annotation.judgements import JudgementConflict, submit_judgement
from annotation.models import Assignment, EditTask, Judgement, Membership, Project
from tests.conftest import add_tasks, full_judgement, make_user

ANNOTATORS = 16
TASKS = 15
OVERLAP = 3


def annotate_until_done(project: Project, user, seed: int, outcomes: Counter, errors: list) -> None:
    rng = random.Random(seed)
    try:
        while (assignment := lease_next_task(project, user, rng=rng)) is not None:
            if rng.random() < 0.15:
                # A slow annotator: the lease runs out before they submit.
                Assignment.objects.filter(pk=assignment.pk).update(
                    expires_at=timezone.now() - timedelta(seconds=1)
                )
            lease = {
                "assignment": {"task": {"variants": [{"id": i} for i in assignment.display_order]}}
            }
            try:
                submit_judgement(
                    assignment.pk, user, full_judgement(lease, client_id=str(uuid.uuid4()))
                )
                outcomes["accepted"] += 1
            except JudgementConflict:
                outcomes["conflict"] += 1
    except Exception as error:  # surfaced by the main thread
        errors.append(error)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_parallel_annotators_never_over_assign(tmp_path):
    project = Project.objects.create(name="busy", overlap=OVERLAP)
    add_tasks(project, tmp_path, count=TASKS)
    users = [make_user(f"parallel{n}") for n in range(ANNOTATORS)]
    Membership.objects.bulk_create(Membership(project=project, user=u) for u in users)
    outcomes: Counter = Counter()
    errors: list = []

    threads = [
        threading.Thread(target=annotate_until_done, args=(project, user, n, outcomes, errors))
        for n, user in enumerate(users)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    per_task = Counter(Judgement.objects.values_list("assignment__task_id", flat=True))
    assert max(per_task.values()) <= OVERLAP
    assert sum(per_task.values()) == outcomes["accepted"]
    pairs = list(Assignment.objects.values_list("task_id", "annotator_id"))
    assert len(pairs) == len(set(pairs))
    for task in EditTask.objects.all():
        assert task.judgement_count == per_task[task.pk]
    # Every slot freed by an expired lease was filled by someone: all tasks are complete.
    assert set(per_task.values()) == {OVERLAP} and len(per_task) == TASKS
