"""Loaded reward models, kept per process: a version's files never change once written."""

from __future__ import annotations

from functools import lru_cache

from rewards.models import RewardModelVersion
from rewards.reward_model import BlipRewardModel


def loaded_model(version: RewardModelVersion) -> BlipRewardModel:
    return _load(str(version.path))


@lru_cache(maxsize=4)
def _load(path: str) -> BlipRewardModel:
    model = BlipRewardModel.load(path)
    model.eval()
    return model
