"""Reward-model fixtures: a tiny random-init model saved once per session."""

from pathlib import Path

import pytest

from evaluation.simulated_judgements import fill_with_simulated_judgements
from rewards.models import RewardModelVersion


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from rewards.reward_model import BlipRewardModel, RewardModelConfig

    directory = tmp_path_factory.mktemp("tiny-reward-model") / "model"
    BlipRewardModel.build(RewardModelConfig()).save(directory)
    return directory


@pytest.fixture
def tiny_version(settings, tiny_model_dir):
    """Factory: a registered version whose files are the untrained tiny model (for code that
    needs a version, not a good one)."""

    def make(project, number: int = 1, status: str = "active", metrics=None):
        directory = f"project-{project.pk}/v{number}"
        target = Path(settings.REWARD_MODEL_ROOT) / directory
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(tiny_model_dir, target_is_directory=True)
        return RewardModelVersion.objects.create(
            project=project,
            number=number,
            status=status,
            base="tiny",
            is_random_init=True,
            directory=directory,
            dataset_hash="0" * 64,
            metrics=metrics or {},
        )

    return make


@pytest.fixture(scope="session")
def blip_itm_dir(tmp_path_factory) -> Path:
    """A tiny BlipForImageTextRetrieval in a downloaded blip-itm checkpoint's layout."""
    from rewards.tiny import save_tiny_blip

    return save_tiny_blip(tmp_path_factory.mktemp("blip-itm") / "blip-itm-tiny")


@pytest.fixture(scope="session")
def captioning_dir(tmp_path_factory) -> Path:
    """The wrong kind: a tiny BlipForConditionalGeneration (a text decoder, no ITM text
    encoder), saved with its tokenizer and image processing like a real download."""
    from transformers import BlipForConditionalGeneration

    from rewards.tiny import build_tiny_blip

    parts = build_tiny_blip()
    directory = tmp_path_factory.mktemp("blip-captioning") / "blip-captioning-tiny"
    BlipForConditionalGeneration(parts.model.config).save_pretrained(directory)
    parts.tokenizer.save_pretrained(directory)
    parts.image_processor.save_pretrained(directory)
    return directory


@pytest.fixture
def judged_project(procedural_project, settings, tmp_path):
    """A 14-task procedural project with 42 simulated judgements, enough to retrain on."""
    settings.REWARD_MODEL_ROOT = tmp_path / "models"
    settings.REWARD_MIN_TRAIN_JUDGEMENTS = 10
    settings.REWARD_MIN_VAL_JUDGEMENTS = 2
    project = procedural_project(tasks=14, overlap=3)
    fill_with_simulated_judgements(project, 42, annotators=3, seed=4)
    return project
