from django.core.management import call_command

from annotation.management.commands.seed_demo import PAIRWISE_PROJECT, RANKING_PROJECT
from annotation.models import EditTask, Membership, Project
from editloop.demo import ADMIN, ANNOTATORS, DEMO_PASSWORD


def test_it_seeds_accounts_and_both_demo_projects(db):
    call_command("seed_demo", tasks=8)

    ranking = Project.objects.get(name=RANKING_PROJECT)
    pairwise = Project.objects.get(name=PAIRWISE_PROJECT)
    assert (ranking.mode, pairwise.mode) == ("ranking", "pairwise")
    assert ranking.tasks.count() == pairwise.tasks.count() == 8
    assert {t.variants.count() for t in ranking.tasks.all()} == {4}
    assert {t.variants.count() for t in pairwise.tasks.all()} == {2}
    assert EditTask.objects.values("category").distinct().count() >= 4
    roles = dict(Membership.objects.filter(project=ranking).values_list("user__username", "role"))
    assert roles == {ADMIN: "manager", **{name: "annotator" for name in ANNOTATORS}}
    assert ranking.memberships.get(user__username=ADMIN).user.check_password(DEMO_PASSWORD)


def test_running_it_again_keeps_the_data(db):
    call_command("seed_demo", tasks=8)
    first_ids = set(EditTask.objects.values_list("pk", flat=True))

    call_command("seed_demo", tasks=8)

    assert set(EditTask.objects.values_list("pk", flat=True)) == first_ids
