"""Fine-tuning fixtures: the reward-model versions of tests/rewards serve the evaluation."""

from tests.rewards.conftest import tiny_model_dir, tiny_version

__all__ = ["tiny_model_dir", "tiny_version"]
