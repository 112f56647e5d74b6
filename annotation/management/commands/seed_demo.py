"""Demo accounts and projects built from real photos and the offline procedural editor."""

import hashlib
import json
import tempfile
from pathlib import Path

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from annotation.importers import import_directory
from annotation.models import Judgement, Membership, Project, split_bucket
from editloop.demo import ADMIN, ANNOTATORS, DEMO_PASSWORD

RANKING_PROJECT = "Demo: procedural edits (rank 4)"
PAIRWISE_PROJECT = "Demo: procedural edits (A/B)"
REWARD_PROJECT = "Demo: reward loop (simulated annotators)"
REWARD_TASKS = 64
SIMULATED_ANNOTATORS = 4
GUIDELINES = """Rank the edits best to worst for the instruction, then score each on the three
aspects from 0 (fails completely) to 5 (perfect).

These edits come from an offline procedural editor (brightness, colour, blur, crops...),
not a learned model: some are right, some too weak, some overdone, some wrong."""


class Command(BaseCommand):
    help = "Create the demo accounts and projects (idempotent: existing data is kept)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tasks", type=int, default=24)
        parser.add_argument(
            "--simulated",
            type=int,
            default=0,
            help="pre-fill the reward-loop project with up to this many simulated judgements",
        )

    def handle(self, *args: object, tasks: int, simulated: int, **options: object) -> None:
        users = self._accounts()
        self._reward_project(users, simulated)
        projects = [(RANKING_PROJECT, "ranking"), (PAIRWISE_PROJECT, "pairwise")]
        if all(
            Project.objects.filter(name=name, tasks__isnull=False).exists() for name, _ in projects
        ):
            for name, mode in projects:
                self._project(name, mode, None, users)
            return
        with tempfile.TemporaryDirectory() as directory:
            manifest = self._demo_manifest(Path(directory), tasks)
            self._project(RANKING_PROJECT, "ranking", manifest, users)
            self._project(PAIRWISE_PROJECT, "pairwise", pairwise_manifest(manifest), users)

    def _accounts(self) -> list[User]:
        admin = _user(ADMIN, is_staff=True)
        if not admin.is_superuser:
            admin.is_superuser = True
            admin.save(update_fields=["is_superuser"])
        return [admin] + [_user(name) for name in ANNOTATORS]

    def _demo_manifest(self, directory: Path, tasks: int) -> Path:
        from training.procedural import build_demo_manifest

        self.stdout.write(f"Rendering {tasks} demo tasks with the procedural editor…")
        return build_demo_manifest(directory, n_tasks=tasks, seed=0)

    @transaction.atomic
    def _project(self, name: str, mode: str, manifest: Path | None, users: list[User]) -> None:
        project, created = Project.objects.get_or_create(
            name=name, defaults={"mode": mode, "overlap": 2, "guidelines": GUIDELINES}
        )
        admin, *annotators = users
        Membership.objects.get_or_create(
            project=project, user=admin, defaults={"role": Membership.Role.MANAGER}
        )
        for user in annotators:
            Membership.objects.get_or_create(project=project, user=user)
        if project.tasks.exists() or manifest is None:
            self.stdout.write(f"{name!r}: already has {project.tasks.count()} tasks, kept.")
            return
        result = import_directory(project, manifest)
        self.stdout.write(f"{name!r}: imported {result.tasks} tasks, {result.variants} variants.")


    def _reward_project(self, users: list[User], simulated: int) -> None:
        """More tasks and a higher overlap, so simulated annotators can give the first
        reward-model retrain a few hundred judgements and still leave a slot for people."""
        project = Project.objects.filter(name=REWARD_PROJECT).first()
        if project is None:
            with tempfile.TemporaryDirectory() as directory:
                from training.procedural import build_demo_manifest

                self.stdout.write(f"Rendering {REWARD_TASKS} tasks for the reward-loop project…")
                manifest = build_demo_manifest(Path(directory), n_tasks=REWARD_TASKS, seed=1)
                val, test = split_fractions_with_every_split(manifest)
                with transaction.atomic():
                    project = Project.objects.create(
                        name=REWARD_PROJECT,
                        overlap=SIMULATED_ANNOTATORS + 1,
                        guidelines=GUIDELINES,
                        val_fraction=val,
                        test_fraction=test,
                        retrain_min_new_judgements=50,
                    )
                    self._members(project, users)
                    result = import_directory(project, manifest)
                self.stdout.write(f"{REWARD_PROJECT!r}: imported {result.tasks} tasks.")
        self._members(project, users)
        missing = simulated - Judgement.objects.filter(
            assignment__task__project=project, simulated=True
        ).count()
        if missing > 0:
            from evaluation.simulated_judgements import fill_with_simulated_judgements

            made = fill_with_simulated_judgements(
                project, missing, annotators=SIMULATED_ANNOTATORS, seed=1
            )
            self.stdout.write(f"{REWARD_PROJECT!r}: {made} simulated judgements added.")

    def _members(self, project: Project, users: list[User]) -> None:
        admin, *annotators = users
        Membership.objects.get_or_create(
            project=project, user=admin, defaults={"role": Membership.Role.MANAGER}
        )
        for user in annotators:
            Membership.objects.get_or_create(project=project, user=user)


def split_fractions_with_every_split(manifest: Path) -> tuple[float, float]:
    """val and test fractions that put at least one of the manifest's source photos in each
    split (the demo has only a handful of photos, and the split is fixed by their hashes)."""
    sources = {json.loads(line)["source"] for line in manifest.read_text().splitlines()}
    buckets = sorted(
        split_bucket(hashlib.sha256((manifest.parent / source).read_bytes()).hexdigest())
        for source in sources
    )
    if len(buckets) < 3:
        return 0.1, 0.1
    test = min(buckets[0] + 0.01, 0.5)
    val = min(buckets[1] + 0.01, 0.75) - test
    return round(val, 4), round(test, 4)


def _user(username: str, *, is_staff: bool = False) -> User:
    user, created = User.objects.get_or_create(username=username, defaults={"is_staff": is_staff})
    if created:
        user.set_password(DEMO_PASSWORD)
        user.save(update_fields=["password"])
    return user


def pairwise_manifest(manifest: Path) -> Path:
    """Same photos, two variants each: the procedural editor's first and last variant."""
    lines = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    for line in lines:
        line["variants"] = [line["variants"][0], line["variants"][-1]]
        line["external_id"] = f"{line['external_id']}-ab"
    target = manifest.with_name("manifest-pairwise.jsonl")
    target.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return target
