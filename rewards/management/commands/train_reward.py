"""``python manage.py train_reward PROJECT [--base tiny|NAME|PATH] [--heads fine]``"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from annotation.management.commands.import_tasks import find_project
from rewards import scheduling
from rewards.models import RewardTrainingRun


class Command(BaseCommand):
    help = "Train a reward-model version from the project's judgements, here, with a progress bar."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="project id or exact name")
        parser.add_argument(
            "--base",
            help="'tiny' (random init), a registered base (manage.py add_base) or a local "
            "checkpoint directory; checked before anything is created",
        )
        parser.add_argument("--heads", choices=["coarse", "fine", "cbm"], default="fine")
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="OPTION=VALUE",
            help="training or model option, e.g. --set epochs=20 --set frozen_prefix=true "
            "(JSON values; they override the project's reward_options)",
        )

    def handle(
        self, *args: object, project: str, base: str | None, heads: str, **options: object
    ) -> None:
        from rewards.runs import execute  # torch is imported only when training

        found = find_project(project)
        try:
            run = scheduling.request_retrain(
                found,
                trigger=RewardTrainingRun.Trigger.COMMAND,
                base=base,
                heads=heads,
                options=_options(options["set"]),
                enqueue=False,
            )
        except scheduling.InvalidBase as error:
            raise CommandError(f"--base: {error}") from None
        except (scheduling.RetrainAlreadyRunning, ValueError) as error:
            raise CommandError(str(error)) from None
        bar = tqdm(total=100, unit="%", desc=f"reward run {run.pk}", file=self.stderr._out)
        with bar:

            def show(fraction: float, message: str) -> None:
                bar.update(round(100 * fraction) - bar.n)
                bar.set_postfix_str(message[:60])

            execute(run, on_progress=show)
            run.refresh_from_db()
            if run.status == RewardTrainingRun.Status.SUCCEEDED:
                show(1.0, "done")
        self.stdout.write(f"run {run.pk}: {run.status}. {run.message}")
        if run.status != RewardTrainingRun.Status.SUCCEEDED:
            raise CommandError(f"the run ended {run.status}")


def _options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise CommandError(f"--set {pair!r}: write OPTION=VALUE")
        try:
            options[name] = json.loads(value)
        except json.JSONDecodeError:
            options[name] = value
    return options
