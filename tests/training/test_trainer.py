"""train_editor end to end on the tiny editor: checkpoints, resume, export, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel
from PIL import Image

from training.procedural import OPERATIONS
from training.records import EditExample, PreferencePair
from training.trainer import FinetuneConfig, StepReport, load_pixels, train_editor

# (instruction, operation) pairs; all invertible but black and white.
EDITS = [
    ("make it brighter", "brighten"),
    ("make the colours warmer", "warm"),
    ("turn the photo black and white", "grayscale"),
    ("add a vignette", "vignette"),
]


def smooth_photo(seed: int) -> Image.Image:
    coarse = np.random.default_rng(seed).integers(0, 256, (3, 4, 3), np.uint8)
    return Image.fromarray(coarse).resize((48, 36), Image.Resampling.BICUBIC)


@pytest.fixture
def examples(tmp_path: Path) -> list[EditExample]:
    """Four procedural edits of four photos, with rewards and aspect scores."""
    records = []
    for index, (instruction, operation) in enumerate(EDITS):
        source, edited = tmp_path / f"source{index}.png", tmp_path / f"edited{index}.png"
        photo = smooth_photo(index)
        photo.save(source)
        OPERATIONS[operation](photo, 1.0).save(edited)
        aspects = {"following": 5.0 - index, "preserving": 4.0, "quality": 3.0 + index / 2}
        records.append(EditExample(source, edited, instruction, float(index), aspects))
    return records


@pytest.fixture
def pairs(tmp_path: Path, examples: list[EditExample]) -> list[PreferencePair]:
    """Each edit preferred over a darkened version of it."""
    records = []
    for index, example in enumerate(examples):
        rejected = tmp_path / f"rejected{index}.png"
        OPERATIONS["darken"](Image.open(example.edited), 1.5).save(rejected)
        records.append(
            PreferencePair(example.source, example.edited, rejected, example.instruction)
        )
    return records


def tiny_config(**overrides: object) -> FinetuneConfig:
    settings = {"max_steps": 4, "batch_size": 2, "learning_rate": 1e-3, "checkpoint_every": 100}
    return FinetuneConfig(**{**settings, **overrides})


def data_for(method: str, examples: list[EditExample], pairs: list[PreferencePair]) -> list:
    return pairs if method == "dpo" else examples


def checkpoint_names(work_dir: Path) -> list[str]:
    return sorted(path.name for path in work_dir.glob("checkpoint-*"))


def exported_unet(result_dir: Path) -> dict[str, torch.Tensor]:
    return UNet2DConditionModel.from_pretrained(result_dir / "unet").state_dict()


class CancelAt:
    """on_step that raises at one step, like a job cancelled from the UI."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.reports: list[StepReport] = []

    def __call__(self, report: StepReport) -> None:
        self.reports.append(report)
        if report.step == self.step:
            raise KeyboardInterrupt("cancelled")


def test_it_trains_checkpoints_and_exports_a_stock_pipeline(tmp_path, examples) -> None:
    # given a supervised run that checkpoints every 2 steps and keeps the last 2
    config = tiny_config(max_steps=6, checkpoint_every=2, keep_last=2)
    reports: list[StepReport] = []

    # when
    result = train_editor(config, examples, "tiny", tmp_path / "run", on_step=reports.append)

    # then
    assert checkpoint_names(tmp_path / "run") == ["checkpoint-4", "checkpoint-6"]
    for name in (
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "training_state.pt",
    ):
        assert (tmp_path / "run" / "checkpoint-6" / name).is_file()
    assert [report.step for report in reports] == [1, 2, 3, 4, 5, 6]
    assert reports[-1].total_steps == 6 and reports[-1].loss == result.final_loss
    assert [row["step"] for row in result.loss_history] == [1, 2, 3, 4, 5, 6]
    assert result.steps == 6 and result.resumed_from == 0 and result.is_random_init
    assert result.pipeline_dir == tmp_path / "run" / "pipeline"
    metadata = json.loads((result.pipeline_dir / "editloop_finetune.json").read_text())
    assert metadata["method"] == "supervised" and metadata["steps"] == 6
    assert metadata["is_random_init"] is True and metadata["config"]["max_steps"] == 6
    pipeline = StableDiffusionInstructPix2PixPipeline.from_pretrained(result.pipeline_dir)
    assert pipeline.unet.config.in_channels == 8


def test_the_training_loss_goes_down(tmp_path, examples) -> None:
    result = train_editor(tiny_config(max_steps=8), examples, "tiny", tmp_path)
    losses = [row["loss"] for row in result.loss_history]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:2]), losses


@pytest.mark.parametrize(
    ("method", "overrides"),
    [
        ("supervised", {"ema_decay": 0.9, "lr_warmup_steps": 3}),
        ("multireward", {}),
        ("dpo", {"learning_rate": 1e-5}),
    ],
)
def test_resuming_continues_exactly_where_the_run_stopped(
    tmp_path, examples, pairs, method, overrides
) -> None:
    config = tiny_config(method=method, max_steps=5, **overrides)
    data = data_for(method, examples, pairs)
    uninterrupted = train_editor(config, data, "tiny", tmp_path / "whole")

    # given a run cancelled by its callback after step 3
    with pytest.raises(KeyboardInterrupt):
        train_editor(config, data, "tiny", tmp_path / "split", on_step=CancelAt(3))
    assert checkpoint_names(tmp_path / "split") == ["checkpoint-3"]

    # when it is started again on the same work_dir
    resumed = train_editor(config, data, "tiny", tmp_path / "split")

    # then it picks up at step 4 with the very losses and weights of the uninterrupted run
    assert resumed.resumed_from == 3
    expected = torch.tensor([row["loss"] for row in uninterrupted.loss_history])
    actual = torch.tensor([row["loss"] for row in resumed.loss_history])
    assert torch.allclose(actual, expected, rtol=1e-5, atol=1e-6)
    whole, split = exported_unet(uninterrupted.pipeline_dir), exported_unet(resumed.pipeline_dir)
    for name, tensor in whole.items():
        assert torch.allclose(split[name], tensor, atol=1e-6), name


def test_a_finished_run_resumes_to_nothing_and_keeps_its_history(tmp_path, examples) -> None:
    first = train_editor(tiny_config(max_steps=2), examples, "tiny", tmp_path)
    again = train_editor(tiny_config(max_steps=2), examples, "tiny", tmp_path)
    assert again.resumed_from == 2 and again.loss_history == first.loss_history


def test_a_work_dir_of_another_method_is_refused(tmp_path, examples) -> None:
    train_editor(tiny_config(max_steps=1), examples, "tiny", tmp_path)
    with pytest.raises(ValueError, match="method"):
        train_editor(tiny_config(method="weighted", max_steps=2), examples, "tiny", tmp_path)


def test_gradient_checkpointing_computes_the_same_steps(tmp_path, examples) -> None:
    plain = train_editor(tiny_config(max_steps=2), examples, "tiny", tmp_path / "plain")
    checkpointed = train_editor(
        tiny_config(max_steps=2, gradient_checkpointing=True), examples, "tiny", tmp_path / "gc"
    )
    assert checkpointed.loss_history[-1]["loss"] == pytest.approx(plain.final_loss, rel=1e-5)


def test_sampling_instructions_are_recorded_for_conditional_and_multireward_runs(
    tmp_path, examples
) -> None:
    conditional = train_editor(
        tiny_config(method="conditional", max_steps=1), examples, "tiny", tmp_path / "conditional"
    )
    multireward = train_editor(
        tiny_config(method="multireward", max_steps=1), examples, "tiny", tmp_path / "multireward"
    )

    meta = json.loads((conditional.pipeline_dir / "editloop_finetune.json").read_text())
    assert meta["instruction_suffix"] == ", image quality is five out of five"
    meta = json.loads((multireward.pipeline_dir / "editloop_finetune.json").read_text())
    assert meta["reward_condition"] == [5.0, 5.0, 5.0]
    # The exported UNet is plain (condition baked in); the conditional one sits beside it.
    assert (
        exported_unet(multireward.pipeline_dir)
        .keys()
        .isdisjoint({"class_embedding.linear_1.weight"})
    )
    conditional_unet = UNet2DConditionModel.from_pretrained(
        multireward.pipeline_dir / meta["multireward_unet"]
    )
    assert conditional_unet.config.class_embed_type == "projection"


def test_cycle_augmentation_adds_the_reverse_of_invertible_edits(tmp_path, examples) -> None:
    result = train_editor(tiny_config(max_steps=1, cycle_augment=True), examples, "tiny", tmp_path)
    assert result.metrics["invertible_share"] == 0.75
    assert result.metrics["train_records"] == 4 and result.metrics["train_examples"] == 7


def test_a_dpo_run_reports_implicit_accuracy(tmp_path, pairs) -> None:
    config = tiny_config(method="dpo", max_steps=3, learning_rate=1e-5)
    result = train_editor(config, pairs, "tiny", tmp_path)
    assert {"implicit_accuracy", "reward_margin", "chosen_reward"} <= set(result.loss_history[0])
    assert 0 <= result.metrics["dpo_implicit_accuracy_mean"] <= 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"method": "rlhf"}, "method"),
        ({"resolution": 30}, "resolution"),
        ({"max_steps": 0}, "max_steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"adam_beta2": 1.0}, "adam_beta2"),
        ({"eta": 0.0}, "eta"),
        ({"weight_clip": 0.5}, "weight_clip"),
        ({"dpo_beta": -1.0}, "dpo_beta"),
        ({"drop_text_prob": 1.5}, "drop_text_prob"),
        ({"drop_text_prob": 0.5, "drop_image_prob": 0.5, "drop_both_prob": 0.5}, "drop_both_prob"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"max_grad_norm": 0.0}, "max_grad_norm"),
        ({"mixed_precision": "fp16"}, "mixed_precision"),
        ({"keep_last": 0}, "keep_last"),
        ({"checkpoint_every": 0}, "checkpoint_every"),
        ({"method": "dpo", "cycle_augment": True}, "cycle_augment"),
        ({"multireward_features": 7}, "multireward_features"),
    ],
)
def test_a_bad_config_names_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        FinetuneConfig(**overrides)


def test_a_config_changed_after_construction_is_checked_again(tmp_path, examples) -> None:
    config = tiny_config()
    config.max_steps = -1
    with pytest.raises(ValueError, match="^max_steps: "):
        train_editor(config, examples, "tiny", tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="bf16 is allowed on CUDA")
def test_bf16_is_refused_without_cuda(tmp_path, examples) -> None:
    with pytest.raises(ValueError, match="^mixed_precision: "):
        train_editor(tiny_config(mixed_precision="bf16"), examples, "tiny", tmp_path)


def test_distributed_without_accelerate_says_what_to_install(tmp_path, examples) -> None:
    try:
        import accelerate  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("accelerate is installed here")
    with pytest.raises(ValueError, match="^distributed: .*accelerate"):
        train_editor(tiny_config(distributed=True), examples, "tiny", tmp_path)


def test_data_must_suit_the_method(tmp_path, examples, pairs) -> None:
    with pytest.raises(ValueError, match=r"^data\[0\]: method 'dpo' trains on PreferencePair"):
        train_editor(tiny_config(method="dpo"), examples, "tiny", tmp_path)
    no_reward = [examples[0], EditExample(examples[1].source, examples[1].edited, "x")]
    with pytest.raises(ValueError, match=r"^data\[1\]\.reward: "):
        train_editor(tiny_config(method="weighted"), no_reward, "tiny", tmp_path)
    bad_scores = [EditExample(examples[0].source, examples[0].edited, "x", 1.0, {"quality": 9})]
    with pytest.raises(ValueError, match=r"^data\[0\]\.aspects: "):
        train_editor(tiny_config(method="multireward"), bad_scores, "tiny", tmp_path)
    with pytest.raises(ValueError, match="^data: no training examples"):
        train_editor(tiny_config(), [], "tiny", tmp_path)


def test_a_missing_image_is_a_file_not_found_naming_the_record(tmp_path, examples) -> None:
    missing = EditExample(tmp_path / "gone.png", examples[0].edited, "make it brighter")
    with pytest.raises(FileNotFoundError, match=r"data\[1\]\.source") as raised:
        train_editor(tiny_config(), [examples[0], missing], "tiny", tmp_path)
    assert raised.value.filename == str(tmp_path / "gone.png")


def test_images_are_centre_cropped_squares_in_minus_one_to_one(tmp_path) -> None:
    # given a 60x30 image: a black band, white in the middle third, black band
    array = np.zeros((30, 60, 3), np.uint8)
    array[:, 20:40] = 255
    Image.fromarray(array).save(tmp_path / "bands.png")

    pixels = load_pixels(tmp_path / "bands.png", 16)

    # then the centre 30x30 square (white in its middle) was scaled to 16x16
    assert pixels.shape == (3, 16, 16) and pixels.dtype == torch.float32
    assert pixels.min() >= -1 and pixels.max() <= 1
    assert pixels[:, :, 8].mean() > 0.9 and pixels[:, :, 0].mean() < -0.9
