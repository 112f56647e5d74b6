"""Fine-tuning fixtures: one torch thread (tiny models gain nothing from threads, and the
test machines are shared), and the reward-model versions of tests/rewards for evaluation."""

from collections.abc import Iterator

import pytest
import torch

from tests.rewards.conftest import tiny_model_dir, tiny_version

__all__ = ["tiny_model_dir", "tiny_version"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
