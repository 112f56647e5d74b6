"""Named base checkpoints: checked when registered or named, resolved when a run executes,
and a run whose model gives constant scores that succeeds with null metrics (issue 11)."""

from pathlib import Path

import pytest

from rewards import scheduling
from rewards.models import BaseCheckpoint, RewardTrainingRun
from rewards.runs import execute

QUICK = {"epochs": 2, "batch_size": 8, "patience": None}


@pytest.fixture(scope="session")
def constant_blip_dir(tmp_path_factory) -> Path:
    """A blip-itm checkpoint whose text encoder ends in a zeroed LayerNorm: its [CLS] state
    is 0 for every input, so a reward model with the text encoder frozen scores every edit
    the same (the constant model of the issue)."""
    import torch

    from rewards.tiny import build_tiny_blip

    parts = build_tiny_blip(seed=3)
    norm = parts.model.text_encoder.encoder.layer[-1].output.LayerNorm
    with torch.no_grad():
        norm.weight.zero_(), norm.bias.zero_()
    directory = tmp_path_factory.mktemp("constant-blip") / "blip-itm-constant"
    parts.model.save_pretrained(directory)
    parts.tokenizer.save_pretrained(directory)
    parts.image_processor.save_pretrained(directory)
    return directory


def _run(project, base: str, **options) -> RewardTrainingRun:
    run = scheduling.request_retrain(
        project, trigger="command", base=base, options={**QUICK, **options}, enqueue=False
    )
    execute(run)
    run.refresh_from_db()
    return run


# --- registering ------------------------------------------------------------------------------


def test_registering_checks_the_directory_and_keeps_what_it_found(blip_itm_dir, staff):
    base = scheduling.register_base("blip-tiny", str(blip_itm_dir), user=staff)

    base.refresh_from_db()
    assert base.kind == "blip-itm" and base.image_size == 64
    assert base.parameters == 807_552 and base.parameters_shown == "807.6 k"
    assert base.info["vision_layers"] == 4 and base.info["weights_file"] == "model.safetensors"
    assert base.path == str(blip_itm_dir) and base.registered_by == staff
    assert base.checked_at is not None


def test_the_wrong_kind_is_refused_naming_what_is_missing_and_nothing_is_saved(captioning_dir, db):
    with pytest.raises(scheduling.InvalidBase) as refused:
        scheduling.register_base("captioner", str(captioning_dir))

    assert refused.value.field == "path"
    assert "BlipForConditionalGeneration" in str(refused.value)
    assert "text_encoder" in str(refused.value)
    assert not BaseCheckpoint.objects.exists()


@pytest.mark.parametrize(
    "name, message",
    [
        ("tiny", "built-in"),
        ("../blip", "letters, digits"),
        ("has space", "letters, digits"),
    ],
)
def test_bad_names_are_refused_before_anything_is_read(blip_itm_dir, db, name, message):
    with pytest.raises(scheduling.InvalidBase, match=message) as refused:
        scheduling.register_base(name, str(blip_itm_dir))

    assert refused.value.field == "name"
    assert not BaseCheckpoint.objects.exists()


def test_a_relative_path_is_refused(db):
    with pytest.raises(scheduling.InvalidBase, match="not an absolute path"):
        scheduling.register_base("blip", "models/blip-itm")


def test_a_name_is_registered_once_unless_replaced(blip_itm_dir, captioning_dir, tmp_path, db):
    first = scheduling.register_base("blip", str(blip_itm_dir))

    with pytest.raises(scheduling.InvalidBase, match="registered already"):
        scheduling.register_base("blip", str(blip_itm_dir))
    with pytest.raises(scheduling.InvalidBase, match="BlipForConditionalGeneration"):
        scheduling.register_base("blip", str(captioning_dir), replace=True)
    first.refresh_from_db()
    assert first.path == str(blip_itm_dir)  # a failed replace changes nothing

    replaced = scheduling.register_base("blip", str(blip_itm_dir), replace=True)
    assert replaced.pk == first.pk and replaced.checked_at > first.checked_at
    assert BaseCheckpoint.objects.count() == 1


def test_a_recheck_fails_loudly_when_the_files_went_away_and_keeps_the_row(
    blip_itm_dir, tmp_path, db
):
    import shutil

    copy = shutil.copytree(blip_itm_dir, tmp_path / "copy")
    base = scheduling.register_base("blip", str(copy))
    (copy / "model.safetensors").unlink()

    with pytest.raises(scheduling.InvalidBase, match="no weights"):
        scheduling.recheck_base(base)

    base.refresh_from_db()
    assert base.kind == "blip-itm"


# --- naming a base for a run ------------------------------------------------------------------


def test_a_manager_may_name_tiny_or_a_registered_base_but_not_a_path(
    project, manager, blip_itm_dir
):
    scheduling.register_base("blip", str(blip_itm_dir))

    assert scheduling.check_base("tiny", may_name_paths=False) == "tiny"
    assert scheduling.check_base("blip", may_name_paths=False) == "blip"
    with pytest.raises(scheduling.InvalidBase, match="only staff"):
        scheduling.request_retrain(
            project, trigger="api", user=manager, base=str(blip_itm_dir), enqueue=False
        )
    with pytest.raises(scheduling.InvalidBase, match="no registered base named 'nope'"):
        scheduling.request_retrain(project, trigger="api", user=manager, base="nope")
    assert not RewardTrainingRun.objects.exists()


def test_staff_may_name_a_checked_path_and_the_run_keeps_it(project, staff, blip_itm_dir):
    run = scheduling.request_retrain(
        project, trigger="api", user=staff, base=str(blip_itm_dir), enqueue=False
    )

    assert run.base == str(blip_itm_dir)
    assert BaseCheckpoint.path_for(run.base) == str(blip_itm_dir)


def test_a_path_of_the_wrong_kind_creates_no_run(project, staff, captioning_dir):
    with pytest.raises(scheduling.InvalidBase, match="BlipForConditionalGeneration"):
        scheduling.request_retrain(
            project, trigger="admin", user=staff, base=str(captioning_dir), enqueue=False
        )
    assert not RewardTrainingRun.objects.exists()


def test_the_deployments_default_base_is_checked_too(project, settings, captioning_dir):
    settings.REWARD_BASE = str(captioning_dir)

    with pytest.raises(scheduling.InvalidBase, match="BlipForConditionalGeneration"):
        scheduling.request_retrain(project, trigger="schedule", enqueue=False)
    assert not RewardTrainingRun.objects.exists()


def test_a_name_resolves_to_its_directory_and_anything_else_stays_as_it_is(blip_itm_dir, db):
    scheduling.register_base("blip", str(blip_itm_dir))

    assert BaseCheckpoint.path_for("blip") == str(blip_itm_dir)
    assert BaseCheckpoint.path_for("tiny") == "tiny"
    assert BaseCheckpoint.path_for("/somewhere/else") == "/somewhere/else"


# --- end to end ------------------------------------------------------------------------------


def test_a_registered_base_trains_by_name_and_the_version_records_name_and_path(
    judged_project, blip_itm_dir
):
    scheduling.register_base("blip-tiny", str(blip_itm_dir))

    run = _run(judged_project, "blip-tiny")

    assert run.status == "succeeded", run.message
    assert run.base == "blip-tiny"  # what was asked
    version = run.version
    assert version.base == "blip-tiny" and not version.is_random_init
    assert version.config["base"] == {"name": "blip-tiny", "path": str(blip_itm_dir)}
    assert version.config["model"]["base"] == str(blip_itm_dir)  # what was loaded
    assert 0.0 <= version.metrics["test"]["pairwise_accuracy"] <= 1.0


def test_a_model_with_constant_scores_succeeds_with_null_correlations_and_the_reason(
    judged_project, constant_blip_dir
):
    scheduling.register_base("constant", str(constant_blip_dir))

    # the whole text encoder frozen: its zeroed last LayerNorm makes every score the same
    run = _run(judged_project, "constant", text_freeze_fraction=1.0)

    assert run.status == "succeeded", run.message
    for split in ("val", "test"):
        metrics = run.version.metrics[split]
        assert metrics["spearman"] is None and metrics["kendall_tau_b"] is None
        assert "constant scores on" in metrics["spearman_undefined"]
        assert "rankings" in metrics["kendall_tau_b_undefined"]
        assert metrics["roc_auc"] == pytest.approx(0.5)  # every pair a model tie
        assert metrics["pairwise_accuracy_nontied"] == pytest.approx(0.5)
    assert "test pairwise accuracy" in run.message
