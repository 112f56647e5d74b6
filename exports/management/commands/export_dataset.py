"""``python manage.py export_dataset PROJECT --kind pairs --format parquet [filters]``

``--layout imagereward`` (rankings) / ``--layout editreward`` (pairs) write those projects'
own training files; ``--labels model|both`` adds the reward model's labels for the tasks
nobody judged (``--reward-version ID``, default the active version).

Runs the export here (progress bar on stderr) and prints where the archive is; with
``--queue`` it goes to a Celery worker instead. The run is an ExportRun like the admin's
and the API's, so it shows in the admin and its archive downloads from the API.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from annotation.management.commands.import_tasks import find_project
from editloop.errors import RequestInvalid
from exports import runs
from exports.models import ExportRun
from exports.request import FORMATS, IMAGE_MODES, KINDS, LABEL_SOURCES, LAYOUTS


class Command(BaseCommand):
    help = "Export a project's judgements as a dataset archive (JSONL, Parquet or HF datasets)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="project id or exact name")
        parser.add_argument("--kind", required=True, choices=KINDS)
        parser.add_argument("--format", default="jsonl", choices=FORMATS)
        parser.add_argument("--images", choices=IMAGE_MODES, help="default: files (embed for hf)")
        parser.add_argument("--round", type=int, action="append", default=[], dest="rounds")
        parser.add_argument("--generator", action="append", default=[], dest="generators")
        parser.add_argument("--since", help="judged on or after (ISO date or date-time)")
        parser.add_argument("--until", help="judged before (a date: up to its end)")
        parser.add_argument("--exclude-simulated", action="store_true")
        parser.add_argument("--exclude-gold", action="store_true")
        parser.add_argument("--exclude-unsure", action="store_true")
        parser.add_argument("--min-agreement", type=float)
        parser.add_argument("--aspect-pairs", action="store_true", help="pairs: per-aspect rows")
        parser.add_argument("--no-ties", action="store_true", help="dpo: leave tied pairs out")
        parser.add_argument(
            "--ties", action="store_true", help="editreward layout: keep tied pairs (tie_case)"
        )
        parser.add_argument("--layout", choices=LAYOUTS, help="another project's files")
        parser.add_argument(
            "--labels", choices=LABEL_SOURCES, help="human (default), model or both"
        )
        parser.add_argument(
            "--reward-version", type=int, help="labels model/both: the version id (default active)"
        )
        parser.add_argument(
            "--image-feature",
            action="store_true",
            help="dpo: embedded images as the HF Image feature instead of plain bytes",
        )
        parser.add_argument("--output", type=Path, help="also copy the archive here")
        parser.add_argument("--queue", action="store_true", help="run on a Celery worker")
        parser.add_argument(
            "--json", action="store_true", help="print the run (with its manifest) as JSON"
        )

    def handle(self, *args: object, project: str, **options: object) -> None:
        found = find_project(project)
        try:
            run = runs.request_export(
                found,
                request_body(options),
                trigger=ExportRun.Trigger.COMMAND,
                enqueue=options["queue"],
            )
        except RequestInvalid as invalid:
            raise CommandError(f"bad export request: {json.dumps(invalid.errors)}") from None
        if options["queue"]:
            self.stdout.write(f"export {run.pk} queued; follow it in the admin or the API")
            return
        bar = tqdm(total=100, unit="%", desc=f"export {run.pk}", file=self.stderr._out)
        with bar:

            def show(fraction: float, message: str) -> None:
                bar.update(round(100 * fraction) - bar.n)
                bar.set_postfix_str(message[:60])

            runs.execute(run, on_progress=show)
            run.refresh_from_db()
            if run.status == ExportRun.Status.SUCCEEDED:
                show(1.0, "done")
        if run.status != ExportRun.Status.SUCCEEDED:
            raise CommandError(f"export {run.pk} ended {run.status}: {run.message}")
        if options["output"]:
            shutil.copyfile(run.path, options["output"])
        if options["json"]:
            self.stdout.write(json.dumps(_as_json(run)))
        else:
            self.stdout.write(f"export {run.pk}: {run.message}\n{options['output'] or run.path}")


def request_body(options: dict) -> dict:
    filters = {
        "rounds": options["rounds"],
        "generators": options["generators"],
        "since": options["since"],
        "until": options["until"],
        "exclude_simulated": options["exclude_simulated"],
        "exclude_gold": options["exclude_gold"],
        "exclude_unsure": options["exclude_unsure"],
        "min_agreement": options["min_agreement"],
    }
    body = {"kind": options["kind"], "filters": filters}
    if not options.get("layout") or options["format"] != "jsonl":
        body["format"] = options["format"]  # a layout writes its own files: format only if asked
    if options["images"]:
        body["images"] = options["images"]
    if options["aspect_pairs"]:
        body["aspect_pairs"] = True
    if options["no_ties"]:
        body["include_ties"] = False
    if options.get("ties"):
        body["include_ties"] = True
    for name in ("layout", "labels", "reward_version"):
        if options.get(name) is not None:
            body[name] = options[name]
    if options.get("image_feature"):
        body["image_feature"] = True
    return body


def _as_json(run: ExportRun) -> dict:
    return {
        "id": run.pk,
        "status": run.status,
        "path": str(run.path),
        "rows": run.rows_written,
        "size_bytes": run.size_bytes,
        "seconds": (run.finished_at - run.started_at).total_seconds(),
        "manifest": run.manifest,
    }
