# ExportRun, moved here from annotation (issue 12): created in the state only, over the
# table annotation 0007 made and annotation 0009 left in place, so no row moves. Its
# content type is renamed too, so the admin log and the permissions given on exports
# keep pointing at it.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def adopt_content_type(apps, schema_editor):
    _relabel(apps, schema_editor, "annotation", "exports")


def return_content_type(apps, schema_editor):
    _relabel(apps, schema_editor, "exports", "annotation")


def _relabel(apps, schema_editor, old, new):
    content_types = apps.get_model("contenttypes", "ContentType").objects.using(
        schema_editor.connection.alias
    )
    if not content_types.filter(app_label=new, model="exportrun").exists():
        content_types.filter(app_label=old, model="exportrun").update(app_label=new)


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('annotation', '0009_move_exportrun_to_exports'),
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ExportRun',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('status', models.CharField(choices=[('pending', 'Pending'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled'), ('skipped', 'Skipped')], default='pending', max_length=10)),
                        ('progress', models.FloatField(default=0.0)),
                        ('message', models.TextField(blank=True)),
                        ('cancel_requested', models.BooleanField(default=False)),
                        ('attempts', models.PositiveSmallIntegerField(default=0, help_text='How many times a worker started it (a resume counts).')),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('heartbeat_at', models.DateTimeField(blank=True, null=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('trigger', models.CharField(choices=[('admin', 'Admin'), ('api', 'Api'), ('command', 'Command')], default='api', max_length=10)),
                        ('kind', models.CharField(choices=[('pairs', 'pairs (TRL RewardTrainer: chosen / rejected)'), ('rankings', 'rankings (ImageReward: generations + ranking with ties)'), ('scores', 'scores (per variant and aspect, raw and aggregated)'), ('dpo', 'dpo (Pick-a-Pic / Diffusion-DPO: jpg_0, jpg_1, label_0, label_1)')], max_length=10)),
                        ('format', models.CharField(choices=[('jsonl', 'JSON lines'), ('parquet', 'Parquet'), ('hf', 'Hugging Face datasets directory (load_from_disk)')], default='jsonl', max_length=10)),
                        ('images', models.CharField(choices=[('embed', 'embedded in the table'), ('files', 'files beside the table (images/<sha256>.<ext>)')], default='files', max_length=10)),
                        ('filters', models.JSONField(blank=True, default=dict, help_text='Normalised export filters.')),
                        ('options', models.JSONField(blank=True, default=dict, help_text='Kind options: aspect_pairs (pairs), include_ties (dpo).')),
                        ('rows_written', models.PositiveBigIntegerField(default=0)),
                        ('counts', models.JSONField(blank=True, default=dict, help_text='Rows per split.')),
                        ('manifest', models.JSONField(blank=True, default=dict)),
                        ('file', models.CharField(blank=True, help_text='The archive, relative to MODEL_ROOT/exports.', max_length=500)),
                        ('size_bytes', models.PositiveBigIntegerField(blank=True, null=True)),
                        ('content_sha256', models.CharField(blank=True, max_length=64)),
                        ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='export_runs', to='annotation.project')),
                        ('requested_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'annotation_exportrun',
                        'ordering': ['-created_at'],
                        'indexes': [models.Index(fields=['project', '-created_at'], name='export_run_project')],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(adopt_content_type, return_content_type),
    ]
