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


# --- named bases and retrains with a chosen base ------------------------------------------


def test_staff_register_a_base_and_see_its_kind_size_and_image_size(admin_client, blip_itm_dir):
    from rewards.models import BaseCheckpoint

    answer = admin_client.post(
        "/admin/rewards/basecheckpoint/add/", {"name": "blip-tiny", "path": str(blip_itm_dir)}
    )

    assert answer.status_code == 302, answer.content.decode()[:2000]
    base = BaseCheckpoint.objects.get()
    assert base.kind == "blip-itm" and base.registered_by.username == "root"
    listing = admin_client.get("/admin/rewards/basecheckpoint/").content.decode()
    assert "blip-tiny" in listing and "807.6 k" in listing and ">64<" in listing


def test_the_add_form_refuses_the_wrong_kind_and_saves_nothing(admin_client, captioning_dir):
    from rewards.models import BaseCheckpoint

    answer = admin_client.post(
        "/admin/rewards/basecheckpoint/add/", {"name": "captioner", "path": str(captioning_dir)}
    )

    assert answer.status_code == 200  # the form again, with the error
    assert "BlipForConditionalGeneration" in answer.content.decode()
    assert not BaseCheckpoint.objects.exists()


def test_the_recheck_action_reports_a_base_whose_files_went_away(
    admin_client, blip_itm_dir, tmp_path
):
    import shutil

    copy = shutil.copytree(blip_itm_dir, tmp_path / "copy")
    base = scheduling.register_base("blip", str(copy))
    (copy / "model.safetensors").unlink()

    answer = admin_client.post(
        "/admin/rewards/basecheckpoint/",
        {"action": "recheck", "_selected_action": [base.pk]},
        follow=True,
    )

    assert "no weights" in answer.content.decode()


def test_the_retrain_form_queues_a_run_on_a_registered_base(admin_client, project, blip_itm_dir):
    scheduling.register_base("blip-tiny", str(blip_itm_dir))
    action = {"action": "retrain_reward_model_with_base", "_selected_action": [project.pk]}

    form = admin_client.post("/admin/annotation/project/", action).content.decode()
    assert "blip-tiny" in form and not RewardTrainingRun.objects.exists()  # the form first

    admin_client.post(
        "/admin/annotation/project/", {**action, "apply": "1", "base": "blip-tiny", "heads": "cbm"}
    )

    run = RewardTrainingRun.objects.get(project=project)
    assert run.base == "blip-tiny" and run.heads == "cbm" and run.trigger == "admin"


def test_the_retrain_form_refuses_a_path_of_the_wrong_kind(admin_client, project, captioning_dir):
    answer = admin_client.post(
        "/admin/annotation/project/",
        {
            "action": "retrain_reward_model_with_base",
            "_selected_action": [project.pk],
            "apply": "1",
            "base": "tiny",
            "path": str(captioning_dir),
            "heads": "fine",
        },
    )

    assert answer.status_code == 200
    assert "BlipForConditionalGeneration" in answer.content.decode()
    assert not RewardTrainingRun.objects.exists()


def test_undefined_metrics_show_as_a_dash_beside_their_reason(admin_client, project, tiny_version):
    metrics = {
        "test": {
            "pairwise_accuracy": 0.5,
            "spearman": None,
            "spearman_undefined": "constant scores on 3 of 3 rankings",
            "human_ceiling": {"pairwise_accuracy": 0.8, "spearman": None},
        }
    }
    version = tiny_version(project, metrics=metrics)

    page = admin_client.get(
        f"/admin/rewards/rewardmodelversion/{version.pk}/change/"
    ).content.decode()

    assert "constant scores on 3 of 3 rankings" in page
    assert "<td>spearman</td><td>—</td><td>—</td>" in page
