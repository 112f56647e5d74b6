from collections.abc import Callable
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.importers import ImportRefused, import_directory
from annotation.models import Project


def find_project(name_or_id: str) -> Project:
    lookup = {"pk": int(name_or_id)} if name_or_id.isdigit() else {"name": name_or_id}
    try:
        return Project.objects.get(**lookup)
    except Project.DoesNotExist:
        raise CommandError(f"no project {name_or_id!r} (give its name or id)") from None


class Command(BaseCommand):
    help = "Import edit tasks from a manifest.jsonl whose image paths are relative to it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="project name or id")
        parser.add_argument("manifest", type=Path, help="path to manifest.jsonl")

    def handle(self, *args: object, project: str, manifest: Path, **options: object) -> None:
        target = find_project(project)
        try:
            result = import_directory(target, manifest, progress=self._progress_bar())
        except ImportRefused as refused:
            for problem in refused.problems:
                where = f"line {problem.line}" if problem.line else "manifest"
                self.stderr.write(f"{where}, {problem.field}: {problem.message}")
            raise CommandError(
                f"import refused ({len(refused.problems)} problem(s)); nothing was imported"
            ) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {result.tasks} tasks and {result.variants} variants into "
                f"{target.name!r} ({result.images_stored} new images stored)."
            )
        )

    def _progress_bar(self) -> Callable[[int], object]:
        from tqdm import tqdm

        bar = tqdm(desc="checking images", unit="img", file=self.stderr, disable=None)
        return bar.update
