"""Admin pages for fine-tuning and generation: launch forms, progress, curves, comparison."""

from django.contrib.auth.models import User
from django.test import Client

from training import scheduling
from training.models import FinetuneRun, GenerationRun


def _staff_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="x" * 12))
    return client


def test_the_launch_form_queues_a_finetune(project, django_capture_on_commit_callbacks):
    admin = _staff_client()
    form = {
        "project": project.pk, "method": "weighted", "base": "tiny", "reward_source": "human",
        "filters": '{"include_simulated": false}', "options": '{"max_steps": 20, "eta": 0.5}',
        "evaluate": "on",
    }

    with django_capture_on_commit_callbacks() as queued:
        response = admin.post("/admin/training/finetunerun/add/", form)

    assert response.status_code == 302, response.content.decode()[:2000]
    run = FinetuneRun.objects.get()
    assert (run.method, run.options, run.filters) == (
        "weighted", {"max_steps": 20, "eta": 0.5}, {"include_simulated": False}
    )
    assert run.evaluate and not run.ab_batch and run.status == "pending"
    assert len(queued) == 1  # sent to the gpu queue once the row is committed


def test_the_launch_form_names_a_bad_option_and_saves_nothing(project):
    admin = _staff_client()
    form = {"project": project.pk, "method": "dpo", "base": "tiny", "reward_source": "human",
            "filters": "{}", "options": '{"dpo_beta": -1}'}

    page = admin.post("/admin/training/finetunerun/add/", form).content.decode()

    assert "dpo_beta: must be positive" in page
    assert not FinetuneRun.objects.exists()
    bad_json = admin.post(
        "/admin/training/finetunerun/add/", {**form, "options": "{max_steps: 3"}
    ).content.decode()
    assert "not JSON" in bad_json


def test_the_run_page_shows_progress_the_loss_curve_and_the_comparison(project):
    run = scheduling.request_finetune(project, method="dpo", enqueue=False)
    run.claim()
    run.report(
        0.5,
        "step 10/20, loss 0.6000",
        step=10,
        loss_curve=[{"step": s, "loss": 0.7 - s / 100, "implicit_accuracy": 0.5 + s / 100}
                    for s in range(1, 11)],
        evaluation={
            "tasks": 3, "win_rate": 0.67, "reward_version": 1,
            "mean_reward": {"base": {"overall": 0.1, "quality": 2.0},
                            "finetuned": {"overall": 0.4, "quality": 2.5}},
        },
    )
    admin = _staff_client()

    page = admin.get(f"/admin/training/finetunerun/{run.pk}/change/").content.decode()

    assert "width:50.0%" in page
    assert page.count("<polyline") == 2 + 2  # loss, DPO accuracy; base and fine-tuned rewards
    assert "win rate of the fine-tuned editor: <b>0.67</b>" in page
    assert "location.reload" in page
    listing = admin.get("/admin/training/finetunerun/").content.decode()
    assert "0.67" in listing and "step 10/20" in listing


def test_cancel_from_the_list_stops_a_running_finetune(project):
    run = scheduling.request_finetune(project, method="supervised", enqueue=False)
    run.claim()

    _staff_client().post(
        "/admin/training/finetunerun/",
        {"action": "cancel_runs", "_selected_action": [run.pk]},
    )

    run.refresh_from_db()
    assert run.cancel_requested


def test_the_project_actions_open_the_launch_forms(project):
    admin = _staff_client()

    for action, form in (("finetune_editor", "finetunerun"), ("generate_round", "generationrun")):
        response = admin.post(
            "/admin/annotation/project/", {"action": action, "_selected_action": [project.pk]}
        )
        assert response.status_code == 302
        assert response["Location"] == f"/admin/training/{form}/add/?project={project.pk}"
        assert admin.get(response["Location"]).status_code == 200


def test_the_generation_form_queues_a_round_and_refuses_a_bad_seed_list(project):
    admin = _staff_client()
    form = {"project": project.pk, "editor": "procedural", "variants_per_task": 3,
            "seeds": "[1, 2]", "guidance_scales": "", "splits": "[]"}

    refused = admin.post("/admin/training/generationrun/add/", form).content.decode()
    accepted = admin.post("/admin/training/generationrun/add/", {**form, "seeds": "[1, 2, 3]"})

    assert "give one seed per variant (3), not 2" in refused
    assert accepted.status_code == 302
    run = GenerationRun.objects.get()
    assert (run.seeds, run.round, run.variants_per_task) == ([1, 2, 3], 2, 3)
