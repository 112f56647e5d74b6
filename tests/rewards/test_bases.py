"""Checking a base checkpoint without torch: layout, architecture, the weights that load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    BlipForConditionalGeneration,
    BlipForImageTextRetrieval,
    BlipTextConfig,
    BlipVisionConfig,
)

from rewards import bases
from rewards.bases import BaseInvalid, expected_blip_shapes, inspect_base
from rewards.reward_model import BlipRewardModel, RewardModelConfig
from rewards.tiny import (
    TINY_HIDDEN,
    TINY_IMAGE_SIZE,
    TINY_LAYERS,
    build_tiny_blip,
    build_tiny_tokenizer,
    save_tiny_blip,
)

ROOT = Path(__file__).resolve().parents[2]


def kept_parameters(model: BlipForImageTextRetrieval) -> int:
    """What the reward model keeps of a blip-itm checkpoint: the vision tower and text encoder."""
    towers = [model.vision_model, model.text_encoder]
    return sum(p.numel() for tower in towers for p in tower.parameters())


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_blip(tmp_path_factory.mktemp("bases") / "blip-itm-tiny")


def copy_of(directory: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(directory, tmp_path / directory.name))


# --- what the check expects matches what transformers writes ------------------------------


def test_the_expected_weights_are_the_ones_save_pretrained_writes(tiny_dir: Path) -> None:
    config = json.loads((tiny_dir / "config.json").read_text())
    written = bases.safetensors_shapes(tiny_dir / "model.safetensors")
    towers = {k: v for k, v in written.items() if k.startswith(("vision_model.", "text_encoder."))}
    vision = {**bases.VISION_DEFAULTS, **config["vision_config"]}
    text = {**bases.TEXT_DEFAULTS, **config["text_config"]}
    assert expected_blip_shapes(vision, text) == towers


def test_the_config_defaults_are_transformers_defaults() -> None:
    vision, text = BlipVisionConfig(), BlipTextConfig()
    assert bases.VISION_DEFAULTS == {k: getattr(vision, k) for k in bases.VISION_DEFAULTS}
    assert bases.TEXT_DEFAULTS == {k: getattr(text, k) for k in bases.TEXT_DEFAULTS}


def test_it_describes_tiny_as_the_real_tiny_model_is() -> None:
    model = build_tiny_blip().model
    info = inspect_base("tiny")
    assert info.kind == "tiny" and info.path == "tiny"
    assert info.parameters == kept_parameters(model)
    assert (info.image_size, info.vision_hidden, info.text_hidden) == (
        TINY_IMAGE_SIZE, TINY_HIDDEN, TINY_HIDDEN,
    )  # fmt: skip
    assert info.vision_layers == info.text_layers == TINY_LAYERS
    assert bases.TINY_TEXT["vocab_size"] == len(build_tiny_tokenizer())


# --- accepted -------------------------------------------------------------------------------


def test_it_accepts_a_blip_itm_directory(tiny_dir: Path) -> None:
    info = inspect_base(tiny_dir)
    assert info.kind == "blip-itm" and info.path == str(tiny_dir.resolve())
    assert info.parameters == kept_parameters(build_tiny_blip().model)
    assert info.image_size == TINY_IMAGE_SIZE and info.weights_file == "model.safetensors"
    assert info.as_dict()["parameters"] == info.parameters
    assert set(info.as_dict()) == {
        "kind", "path", "parameters", "image_size", "vision_hidden", "text_hidden",
        "vision_layers", "text_layers", "weights_file",
    }  # fmt: skip


def test_it_accepts_a_sharded_checkpoint_and_the_model_loads_it(tmp_path: Path) -> None:
    # given: save_pretrained splits the weights into shards with an index
    parts = build_tiny_blip(seed=1)
    directory = tmp_path / "sharded"
    parts.model.save_pretrained(directory, max_shard_size="300KB")
    parts.tokenizer.save_pretrained(directory)
    parts.image_processor.save_pretrained(directory)
    assert (directory / "model.safetensors.index.json").is_file()
    assert len(list(directory.glob("model-*.safetensors"))) > 1
    # when / then
    info = inspect_base(directory)
    assert info.weights_file == "model.safetensors.index.json"
    assert info.parameters == kept_parameters(parts.model)
    model = BlipRewardModel.build(RewardModelConfig(base=str(directory)))
    source = parts.model.vision_model.state_dict()
    assert all(torch.equal(source[k], v) for k, v in model.vision.state_dict().items())


def test_it_accepts_a_torch_bin_checkpoint_and_loads_it(tiny_dir: Path, tmp_path: Path) -> None:
    # given: the older layout, pytorch_model.bin (a torch.save'd state dict)
    directory = copy_of(tiny_dir, tmp_path)
    state = load_file(str(directory / "model.safetensors"))
    (directory / "model.safetensors").unlink()
    torch.save(state, directory / "pytorch_model.bin")
    # when / then
    info = inspect_base(directory)
    assert info.weights_file == "pytorch_model.bin"
    assert info.parameters == kept_parameters(build_tiny_blip().model)
    model = BlipRewardModel.build(RewardModelConfig(base=str(directory)))
    name = "encoder.layer.0.crossattention.self.key.weight"
    assert torch.equal(model.text.state_dict()[name], state[f"text_encoder.{name}"])


# --- refused ------------------------------------------------------------------------------


def test_it_refuses_a_captioning_checkpoint_naming_the_text_encoder(
    tiny_dir: Path, tmp_path: Path
) -> None:
    # given: BlipForConditionalGeneration has a text decoder, no ITM text encoder
    parts = build_tiny_blip()
    directory = tmp_path / "blip-captioning"
    BlipForConditionalGeneration(parts.model.config).save_pretrained(directory)
    parts.tokenizer.save_pretrained(directory)
    parts.image_processor.save_pretrained(directory)
    # when / then
    with pytest.raises(BaseInvalid) as refused:
        inspect_base(directory)
    message = str(refused.value)
    assert "BlipForConditionalGeneration" in message and "BlipForImageTextRetrieval" in message
    assert "missing" in message and "text_encoder.*" in message
    assert "text_encoder.embeddings.word_embeddings.weight" in message
    # the reward model refuses it too, instead of training a random text encoder
    with pytest.raises(BaseInvalid, match="text_encoder"):
        BlipRewardModel.build(RewardModelConfig(base=str(directory)))


def test_it_refuses_a_directory_without_config_json(tiny_dir: Path, tmp_path: Path) -> None:
    directory = copy_of(tiny_dir, tmp_path)
    (directory / "config.json").unlink()
    with pytest.raises(BaseInvalid, match=r"no config\.json"):
        inspect_base(directory)


def test_it_refuses_a_directory_without_a_tokenizer(tiny_dir: Path, tmp_path: Path) -> None:
    directory = copy_of(tiny_dir, tmp_path)
    for name in ("tokenizer.json", "vocab.txt"):
        (directory / name).unlink(missing_ok=True)
    with pytest.raises(BaseInvalid, match=r"no tokenizer \(vocab\.txt or tokenizer\.json\)"):
        inspect_base(directory)


def test_it_refuses_a_directory_without_image_processing(tiny_dir: Path, tmp_path: Path) -> None:
    directory = copy_of(tiny_dir, tmp_path)
    (directory / "preprocessor_config.json").unlink()
    with pytest.raises(BaseInvalid, match=r"preprocessor_config\.json"):
        inspect_base(directory)


def test_it_refuses_weights_missing_a_key_naming_it(tiny_dir: Path, tmp_path: Path) -> None:
    directory = copy_of(tiny_dir, tmp_path)
    state = load_file(str(directory / "model.safetensors"))
    missing = "text_encoder.encoder.layer.2.crossattention.self.value.weight"
    del state[missing]
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(BaseInvalid) as refused:
        inspect_base(directory)
    assert f"missing 1 weights (text_encoder.*): {missing}" in str(refused.value)


def test_it_refuses_weights_of_the_wrong_shape(tiny_dir: Path, tmp_path: Path) -> None:
    directory = copy_of(tiny_dir, tmp_path)
    state = load_file(str(directory / "model.safetensors"))
    name = "vision_model.encoder.layers.1.mlp.fc1.weight"
    state[name] = torch.zeros(7, TINY_HIDDEN)
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(BaseInvalid, match=rf"{name} \[7, 96\] \(expected \[192, 96\]\)"):
        inspect_base(directory)


def test_it_refuses_unexpected_tower_weights(tiny_dir: Path, tmp_path: Path) -> None:
    directory = copy_of(tiny_dir, tmp_path)
    state = load_file(str(directory / "model.safetensors"))
    state["vision_model.encoder.layers.9.mlp.fc1.weight"] = torch.zeros(2, 2)
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(
        BaseInvalid, match=r"1 unexpected weights: vision_model\.encoder\.layers\.9"
    ):
        inspect_base(directory)


def test_it_refuses_a_path_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(BaseInvalid, match="does not exist"):
        inspect_base(tmp_path / "nowhere")


def test_it_refuses_a_truncated_safetensors_file(tiny_dir: Path, tmp_path: Path) -> None:
    directory = copy_of(tiny_dir, tmp_path)
    (directory / "model.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(BaseInvalid, match="not a safetensors file"):
        inspect_base(directory)


# --- a pickle is listed, never run ----------------------------------------------------------


class RunsCode:
    """Pickles as a call of os.system: loading it with plain pickle would run the command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_without_running_it(
    tiny_dir: Path, tmp_path: Path
) -> None:
    # given: a torch file whose pickle calls os.system
    directory = copy_of(tiny_dir, tmp_path)
    marker = tmp_path / "it-ran"
    state = load_file(str(directory / "model.safetensors"))
    (directory / "model.safetensors").unlink()
    torch.save({**state, "extra": RunsCode(marker)}, directory / "pytorch_model.bin")
    # when / then
    with pytest.raises(BaseInvalid, match=r"refers to (posix|os)\.system.*not loaded"):
        inspect_base(directory)
    assert not marker.exists()


def test_the_inert_reader_lists_a_torch_files_tensors(tmp_path: Path) -> None:
    file = tmp_path / "weights.pt"
    torch.save(
        {
            "a": torch.zeros(3, 4),
            "b": torch.nn.Parameter(torch.ones(2)),
            "c": torch.zeros(1).half(),
        },
        file,
    )
    assert bases.torch_file_shapes(file) == {"a": (3, 4), "b": (2,), "c": (1,)}


def test_importing_bases_does_not_import_torch() -> None:
    code = "import rewards.bases, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
