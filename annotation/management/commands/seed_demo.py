"""Demo accounts and projects built from real photos and the offline procedural editor."""

import json
import tempfile
from pathlib import Path

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from annotation.importers import import_directory
from annotation.models import Membership, Project
from editloop.demo import ADMIN, ANNOTATORS, DEMO_PASSWORD

RANKING_PROJECT = "Demo: procedural edits (rank 4)"
PAIRWISE_PROJECT = "Demo: procedural edits (A/B)"
GUIDELINES = """Rank the edits best to worst for the instruction, then score each on the three
aspects from 0 (fails completely) to 5 (perfect).

These edits come from an offline procedural editor (brightness, colour, blur, crops...),
not a learned model: some are right, some too weak, some overdone, some wrong."""


class Command(BaseCommand):
    help = "Create the demo accounts and projects (idempotent: existing data is kept)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tasks", type=int, default=24)

    def handle(self, *args, tasks: int, **options) -> None:
        users = self._accounts()
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
