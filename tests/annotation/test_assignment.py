import random
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.assignment import expire_leases, lease_next_task
from annotation.judgements import skip_assignment, submit_judgement
from annotation.models import Assignment, EditTask, Membership, Project
from tests.conftest import add_tasks, full_judgement, make_user


def judge(assignment: Assignment, client_id: str) -> None:
    lease = {"assignment": {"task": {"variants": [{"id": i} for i in assignment.display_order]}}}
    submit_judgement(
        assignment.pk, assignment.annotator, full_judgement(lease, client_id=client_id)
    )


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def test_it_leases_a_task_with_a_random_stored_variant_order(project, annotator):
    assignment = lease_next_task(project, annotator, rng=random.Random(3))

    variant_ids = set(assignment.task.variants.values_list("pk", flat=True))
    assert set(assignment.display_order) == variant_ids
    assert assignment.status == Assignment.Status.LEASED
    assert assignment.expires_at - assignment.leased_at == timedelta(minutes=30)


def test_variant_orders_differ_between_assignments(db, manager, tmp_path):
    project = Project.objects.create(name="orders", overlap=30)
    add_tasks(project, tmp_path, count=1)
    orders = set()
    for n in range(12):
        user = make_user(f"a{n}")
        Membership.objects.create(project=project, user=user)
        orders.add(tuple(lease_next_task(project, user).display_order))

    assert len(orders) > 1


def test_it_never_gives_the_same_task_to_an_annotator_twice(project, annotator):
    seen = []
    while (assignment := lease_next_task(project, annotator, keep=frozenset(seen))) is not None:
        seen.append(assignment.pk)

    tasks = Assignment.objects.filter(annotator=annotator).values_list("task_id", flat=True)
    assert len(tasks) == len(set(tasks)) == 3


def test_a_task_gets_at_most_overlap_annotators(project, annotator, other_annotator):
    third = make_user("third")
    Membership.objects.create(project=project, user=third)
    for user in (annotator, other_annotator):
        for _ in range(3):
            judge(lease_next_task(project, user), str(uuid.uuid4()))

    assert lease_next_task(project, third) is None
    assert set(EditTask.objects.values_list("judgement_count", flat=True)) == {2}


def test_it_serves_higher_priority_then_fewest_judgements_then_oldest(project, annotator):
    low, middle, high = EditTask.objects.order_by("id")
    EditTask.objects.filter(pk=high.pk).update(priority=5)
    EditTask.objects.filter(pk=low.pk).update(judgement_count=1)

    order = []
    while (assignment := lease_next_task(project, annotator, keep=frozenset(order))) is not None:
        order.append(assignment.pk)

    served = list(
        Assignment.objects.filter(pk__in=order).order_by("pk").values_list("task_id", flat=True)
    )
    assert served == [high.pk, middle.pk, low.pk]


def test_an_expired_lease_returns_the_task_to_the_pool(project, annotator, other_annotator):
    project.overlap = 1
    project.save()
    for _ in range(3):
        lease_next_task(
            project, annotator, keep=frozenset(Assignment.objects.values_list("pk", flat=True))
        )
    assert lease_next_task(project, other_annotator) is None

    Assignment.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert lease_next_task(project, other_annotator) is not None


def test_it_hands_back_a_live_lease_after_a_reload(project, annotator):
    first = lease_next_task(project, annotator)

    assert lease_next_task(project, annotator).pk == first.pk
    assert lease_next_task(project, annotator, keep=frozenset({first.pk})).pk != first.pk


def test_expire_leases_marks_only_stale_leases(project, annotator, other_annotator):
    stale = lease_next_task(project, annotator)
    live = lease_next_task(project, other_annotator)
    Assignment.objects.filter(pk=stale.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    assert expire_leases() == 1

    stale.refresh_from_db()
    live.refresh_from_db()
    assert (stale.status, live.status) == ("expired", "leased")


def test_a_skipped_task_is_not_served_to_that_annotator_again(project, annotator, other_annotator):
    project.overlap = 1
    project.save()
    skipped = lease_next_task(project, annotator)
    skip_assignment(skipped.pk, annotator, "cannot see the difference")

    held = []
    while (assignment := lease_next_task(project, annotator, keep=frozenset(held))) is not None:
        held.append(assignment.pk)
    served_later = Assignment.objects.filter(pk__in=held).values_list("task_id", flat=True)
    assert skipped.task_id not in served_later
    assert len(served_later) == 2
    # the skipped slot is free for someone else
    assert lease_next_task(project, other_annotator).task_id == skipped.task_id


@pytest.fixture
def gold_project(db, annotator, tmp_path) -> Project:
    project = Project.objects.create(name="gold", overlap=1, gold_rate=0.5)
    Membership.objects.create(project=project, user=annotator)
    add_tasks(project, tmp_path / "regular", count=20)
    EditTask.objects.filter(project=project, external_id__in=["t-0", "t-1", "t-2", "t-3"]).update(
        is_gold=True
    )
    return project


def test_it_interleaves_gold_tasks_at_the_gold_rate(gold_project, annotator):
    rng = random.Random(7)
    served = []
    for _ in range(10):
        assignment = lease_next_task(
            gold_project, annotator, keep=frozenset(a for a, _ in served), rng=rng
        )
        served.append((assignment.pk, assignment.task.is_gold))

    gold = [is_gold for _, is_gold in served]
    assert 2 <= sum(gold) <= 4  # 4 gold tasks exist; about half the draws ask for one
    assert not all(gold[:4])


def test_gold_tasks_ignore_overlap_and_reach_every_annotator(
    gold_project, annotator, other_annotator
):
    Membership.objects.create(project=gold_project, user=other_annotator)
    gold_project.gold_rate = 1.0
    gold_project.save()
    EditTask.objects.filter(is_gold=True).exclude(external_id="t-0").update(is_gold=False)

    first = lease_next_task(gold_project, annotator)
    judge(first, uid(1))
    second = lease_next_task(gold_project, other_annotator)

    assert first.task.is_gold and second.task.is_gold
    assert first.task_id == second.task_id


def test_no_work_when_every_task_is_done(project, annotator):
    held = []
    while (assignment := lease_next_task(project, annotator, keep=frozenset(held))) is not None:
        held.append(assignment.pk)
        judge(assignment, uid(assignment.pk))

    assert lease_next_task(project, annotator) is None
    assert len(held) == 3
