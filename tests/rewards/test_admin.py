"""Admin pages of the reward loop render progress, curves and version metrics."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from rewards import scheduling
from rewards.models import RewardTrainingRun

METRICS = {
    "epsilon": 0.0,
    "val": {"pairwise_accuracy": 0.66, "roc_auc": 0.7, "human_ceiling": {"pairwise_accuracy": 0.8}},
    "test": {
        "pairwise_accuracy": 0.64,
        "roc_auc": 0.69,
        "human_ceiling": {"pairwise_accuracy": 0.79},
    },
}


@pytest.fixture
def admin_client(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="x" * 12))
    return client


def test_the_run_page_shows_a_progress_bar_and_the_loss_curve(admin_client, project):
    run = scheduling.request_retrain(project, trigger="admin", enqueue=False)
    run.claim()
    run.report(
        0.4,
        "step 40/100",
        loss_curve=[{"step": s, "loss": 1.0 / (s + 1)} for s in range(0, 40, 10)],
        val_curve=[{"step": 20, "accuracy": 0.6}, {"step": 40, "accuracy": 0.7}],
    )

    page = admin_client.get(f"/admin/rewards/rewardtrainingrun/{run.pk}/change/").content.decode()

    assert "width:40.0%" in page  # the bar
    assert page.count("<polyline") == 2  # loss, and validation accuracy
    assert "location.reload" in page  # it follows a running run
    listing = admin_client.get("/admin/rewards/rewardtrainingrun/").content.decode()
    assert "step 40/100" in listing and "width:40.0%" in listing


def test_the_versions_page_plots_every_version_against_the_human_ceiling(
    admin_client, project, tiny_version
):
    tiny_version(project, number=1, status="retired", metrics=METRICS)
    tiny_version(project, number=2, metrics=METRICS)

    page = admin_client.get("/admin/rewards/rewardmodelversion/").content.decode()

    assert "reward model versions" in page
    assert "human ceiling (test)" in page
    assert page.count("<svg") >= 1
    assert "0.640" in page  # the test accuracy column
    assert "tiny random-init" in page


def test_promote_and_roll_back_from_the_admin(admin_client, project, tiny_version):
    first = tiny_version(project, number=1)
    second = tiny_version(project, number=2, status="candidate")
    url = "/admin/rewards/rewardmodelversion/"

    admin_client.post(url, {"action": "promote", "_selected_action": [second.pk]})
    first.refresh_from_db(), second.refresh_from_db()
    assert second.is_active and first.status == "retired"

    admin_client.post(url, {"action": "roll_back", "_selected_action": [second.pk]})
    first.refresh_from_db(), second.refresh_from_db()
    assert first.is_active and second.status == "retired"


def test_the_project_action_queues_one_retrain_per_project(admin_client, project):
    admin_client.post(
        "/admin/annotation/project/",
        {"action": "retrain_reward_model_now", "_selected_action": [project.pk]},
    )
    admin_client.post(
        "/admin/annotation/project/",
        {"action": "retrain_reward_model_now", "_selected_action": [project.pk]},
    )

    assert RewardTrainingRun.objects.filter(project=project).count() == 1


def test_runs_are_read_only_in_the_admin(admin_client, project):
    run = scheduling.request_retrain(project, trigger="admin", enqueue=False)

    answer = admin_client.post(
        f"/admin/rewards/rewardtrainingrun/{run.pk}/change/", {"options": "{}"}
    )

    assert answer.status_code == 403
    assert admin_client.get("/admin/rewards/rewardtrainingrun/add/").status_code == 403
