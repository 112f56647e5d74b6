"""``python manage.py seed_pairs N [--project NAME]``: N judgement pairs, fast, for benchmarks.

A pairwise project of its own (2 variants a task, ``--overlap`` annotators a task); every
judgement ranks the two variants without a tie, so it is exactly one pair. Rows are made
by Postgres itself (``INSERT … SELECT`` over ``generate_series``), a batch per transaction,
with the same columns and constraints the annotation API fills. Images come from a small
pool of real PNG files shared by all tasks, as a real project shares photos across tasks
far less, but the export's table is what a pairs benchmark measures.
"""

from __future__ import annotations

import random

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, models, transaction
from PIL import Image as PILImage
from tqdm import tqdm

from annotation.images import store_pil_image
from annotation.models import (
    AspectScore,
    Assignment,
    EditTask,
    Image,
    Judgement,
    Project,
    Variant,
)
from evaluation.simulated_judgements import simulated_users

# Per table: the columns seeded here, as SQL over the FROM clause below them; every other
# column gets its Django default (see insert_sql), so a column added later needs nothing here.
TASKS = (
    EditTask,
    {
        "project_id": "%(project)s",
        "source_id": "(%(sources)s::bigint[])[1 + mod(g, %(pool)s)]",
        "instruction": "'seeded edit ' || g || ': make it warmer'",
        "category": "'global'",
        "split": "(%(splits)s::text[])[1 + mod(g, %(pool)s)]",
        "external_id": "'seed-' || g",
        "judgement_count": "%(overlap)s",
        "created_at": "now()",
    },
    "FROM generate_series(%(start)s, %(stop)s - 1) AS g",
)
VARIANTS = (
    Variant,
    {
        "task_id": "t.id",
        "image_id": "(%(images)s::bigint[])[1 + mod(2 * t.id + k, %(pool)s)]",
        "generator": "CASE WHEN k = 0 THEN 'seed-a' ELSE 'seed-b' END",
        "seed": "k",
        "created_at": "now()",
    },
    "FROM annotation_edittask t CROSS JOIN generate_series(0, 1) AS k\n"
    "WHERE t.project_id = %(project)s AND t.id > %(after)s",
)
ASSIGNMENTS = (
    Assignment,
    {
        "task_id": "t.id",
        "annotator_id": "(%(annotators)s::bigint[])[1 + mod(t.id + k, %(people)s)]",
        "status": "'submitted'",
        "leased_at": "now()",
        "expires_at": "now() + interval '30 minutes'",
        "display_order": "(SELECT jsonb_agg(v.id ORDER BY v.id) FROM annotation_variant v "
        "WHERE v.task_id = t.id)",
        "finished_at": "now()",
    },
    "FROM annotation_edittask t CROSS JOIN generate_series(0, %(overlap)s - 1) AS k\n"
    "WHERE t.project_id = %(project)s AND t.id > %(after)s",
)
# The first variant wins two judgements in three; created_at spread over the last 30 days.
JUDGEMENTS = (
    Judgement,
    {
        "assignment_id": "a.id",
        "client_id": "gen_random_uuid()",
        "ranking": """CASE WHEN mod(a.id, 3) = 0
            THEN jsonb_build_array(jsonb_build_array(a.display_order -> 1),
                                   jsonb_build_array(a.display_order -> 0))
            ELSE jsonb_build_array(jsonb_build_array(a.display_order -> 0),
                                   jsonb_build_array(a.display_order -> 1)) END""",
        "scores": """jsonb_build_object(
            a.display_order ->> 0, jsonb_build_object(
                'following', mod(a.id, 6), 'preserving', mod(a.id + 1, 6),
                'quality', mod(a.id + 2, 6)),
            a.display_order ->> 1, jsonb_build_object(
                'following', mod(a.id + 3, 6), 'preserving', mod(a.id + 4, 6),
                'quality', mod(a.id + 5, 6)))""",
        "ranking_ms": "4000",
        "scoring_ms": "8000",
        "total_ms": "13000",
        "created_at": "now() - make_interval(secs => mod(a.id * 7919, 30 * 86400))",
    },
    "FROM annotation_assignment a JOIN annotation_edittask t ON t.id = a.task_id\n"
    "WHERE t.project_id = %(project)s AND t.id > %(after)s",
)
SCORES = (
    AspectScore,
    {
        "judgement_id": "j.id",
        "variant_id": "variant.key::bigint",
        "aspect": "aspect.key",
        "value": "aspect.value::smallint",
    },
    """FROM annotation_judgement j
JOIN annotation_assignment a ON a.id = j.assignment_id
JOIN annotation_edittask t ON t.id = a.task_id
CROSS JOIN LATERAL jsonb_each(j.scores) AS variant
CROSS JOIN LATERAL jsonb_each_text(variant.value) AS aspect
WHERE t.project_id = %(project)s AND t.id > %(after)s""",
)


def insert_sql(model: type[models.Model], given: dict[str, str], source: str) -> tuple[str, dict]:
    """``INSERT INTO <table> (every column) SELECT <given or the Django default> <source>``."""
    columns, values, params = [], [], {}
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(field.column)
        if field.column in given:
            values.append(given[field.column])
            continue
        name = f"default_{field.column}"
        params[name] = field.get_db_prep_save(field.get_default(), connection)
        values.append(f"%({name})s::{field.db_type(connection)}")
    unknown = set(given) - set(columns)
    if unknown:
        raise CommandError(f"{model.__name__} has no column(s) {', '.join(sorted(unknown))}")
    table = model._meta.db_table
    sql = f"INSERT INTO {table} ({', '.join(columns)})\nSELECT {', '.join(values)}\n{source}"
    return sql, params


class Command(BaseCommand):
    help = "Seed N judgement pairs into a pairwise project of their own (benchmarks)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("pairs", type=int, help="judgements to add (each is one pair)")
        parser.add_argument("--project", default="Seeded pairs", help="created if missing")
        parser.add_argument("--overlap", type=int, default=4, help="annotators per task")
        parser.add_argument("--annotators", type=int, default=8)
        parser.add_argument("--images", type=int, default=64, help="PNG files in the pool")
        parser.add_argument("--batch", type=int, default=50_000, help="judgements a transaction")
        parser.add_argument(
            "--no-scores", action="store_true", help="skip the AspectScore rows (6 a judgement)"
        )

    def handle(self, *args: object, pairs: int, project: str, overlap: int, annotators: int,
               images: int, batch: int, no_scores: bool, **options: object) -> None:
        if pairs < overlap or pairs % overlap:
            raise CommandError(f"N must be a multiple of --overlap ({overlap})")
        if not 1 <= overlap <= annotators:
            raise CommandError("--overlap must be between 1 and --annotators")
        if images < 2:
            raise CommandError("--images must be at least 2")
        found, _ = Project.objects.get_or_create(
            name=project, defaults={"mode": Project.Mode.PAIRWISE, "overlap": overlap}
        )
        if found.overlap != overlap:
            raise CommandError(f"{found} has overlap {found.overlap}, not {overlap}")
        people = annotator_ids(found, annotators)
        pool = image_pool(images)
        start = found.tasks.count()
        per_batch = max(1, batch // overlap)
        tasks = pairs // overlap
        bar = tqdm(total=pairs, unit="pair", desc=f"seeding {found}", file=self.stderr._out)
        with bar:
            for first in range(start, start + tasks, per_batch):
                stop = min(first + per_batch, start + tasks)
                seed_batch(found, first, stop, pool, people, scores=not no_scores)
                bar.update((stop - first) * overlap)
        self.stdout.write(
            f"{found} (id {found.pk}): {found.tasks.count():,} tasks, "
            f"{(found.tasks.count()) * overlap:,} judgement pairs"
        )


def annotator_ids(project: Project, count: int) -> list[int]:
    """Accounts without a usable password, members of the project."""
    return [user.pk for user in simulated_users(project, count, prefix="seed-annotator-")]


def image_pool(count: int) -> list[Image]:
    """``count`` distinct small PNGs, stored as imports store them (content-addressed)."""
    rng = random.Random(0)
    found = []
    for _ in range(count):
        colour = tuple(rng.randrange(256) for _ in range(3))
        found.append(store_pil_image(PILImage.new("RGB", (64, 48), colour)))
    return found


def seed_batch(project: Project, start: int, stop: int, pool: list[Image], people: list[int],
               *, scores: bool) -> None:
    after = project.tasks.order_by("-id").values_list("id", flat=True).first() or 0
    params = {
        "project": project.pk,
        "start": start,
        "stop": stop,
        "pool": len(pool),
        "sources": [image.pk for image in pool],
        "splits": [project.split_for(image.sha256) for image in pool],
        "images": [image.pk for image in pool],
        "annotators": people,
        "people": len(people),
        "overlap": project.overlap,
        "after": after,
    }
    tables = [TASKS, VARIANTS, ASSIGNMENTS, JUDGEMENTS] + ([SCORES] if scores else [])
    with transaction.atomic(), connection.cursor() as cursor:
        for model, given, source in tables:
            sql, defaults = insert_sql(model, given, source)
            cursor.execute(sql, {**params, **defaults})
