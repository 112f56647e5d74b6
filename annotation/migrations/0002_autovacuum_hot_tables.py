"""Vacuum the queue's hot tables early.

Every judgement updates its task (``judgement_count``, part of the queue index) and its
assignment (``status``, indexed): no HOT updates, so each leaves a dead index entry at the
head of the queue. With PostgreSQL's defaults (vacuum after 20% of a table changed) those
pile up and every lease wades through them; measured in docs/benchmarks.md.
"""

from django.db import migrations

HOT_TABLES = ("annotation_edittask", "annotation_assignment")
SETTINGS = (
    "autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_threshold = 500, "
    "autovacuum_analyze_scale_factor = 0.05"
)
RESET = "autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, autovacuum_analyze_scale_factor"


class Migration(migrations.Migration):
    dependencies = [("annotation", "0001_initial")]

    operations = [
        migrations.RunSQL(
            sql=[f"ALTER TABLE {table} SET ({SETTINGS})" for table in HOT_TABLES],
            reverse_sql=[f"ALTER TABLE {table} RESET ({RESET})" for table in HOT_TABLES],
        )
    ]
