"""``python manage.py add_base NAME PATH [--replace]``: register a base checkpoint by name."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rewards import scheduling


class Command(BaseCommand):
    help = (
        "Check a local BLIP (or ImageReward) checkpoint directory and register it under a name "
        "that runs, the admin and the API use."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="letters, digits, - and _ (e.g. blip-itm-base-coco)")
        parser.add_argument("path", help="absolute checkpoint directory on the gpu workers")
        parser.add_argument(
            "--replace",
            action="store_true",
            help="re-check an existing name (and point it at PATH)",
        )

    def handle(self, *args: object, name: str, path: str, replace: bool, **options: object) -> None:
        try:
            base = scheduling.register_base(name, path, replace=replace)
        except scheduling.InvalidBase as error:
            raise CommandError(f"{error.field}: {error}") from None
        self.stdout.write(
            f"{base.name}: {base.kind}, {base.parameters_shown} parameters "
            f"({base.parameters}), image size {base.image_size}, at {base.path}"
        )
