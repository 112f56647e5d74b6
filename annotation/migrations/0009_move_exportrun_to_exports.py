# ExportRun moved to the exports app (issue 12): removed from annotation's state only.
# The table annotation_exportrun stays where it is, with its rows; exports' 0001_initial
# takes the model over with the same db_table.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0008_project_reward_options'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='ExportRun')],
            database_operations=[],
        ),
    ]
