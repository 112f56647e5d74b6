"""The web server and beat import the fine-tuning glue without loading torch."""

import subprocess
import sys

from tests.conftest import ROOT

LIGHT = ["training.config", "training.api", "training.scheduling", "training.admin",
         "training.tasks", "training.feedback",
         # the reward side's web modules: bases are checked there, torch-free (issue 11)
         "rewards.models", "rewards.scheduling", "rewards.api", "rewards.admin",
         "rewards.management.commands.add_base"]  # fmt: skip


def test_the_web_side_of_fine_tuning_does_not_import_torch():
    code = (
        "import django, os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', "
        "'editloop.settings'); django.setup(); "
        + "; ".join(f"import {name}" for name in LIGHT)
        + "; print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"
