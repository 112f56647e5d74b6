"""ImageReward's released checkpoint as a base: checked torch-free, mapped, warm-started.

The state dict is made in code with the key names of THUDM/ImageReward's model
(ImageReward/ImageReward.py: `blip` = BLIP_Pretrain, `mlp` = MLP; models/BLIP/vit.py for
`blip.visual_encoder.*`, models/BLIP/med.py for `blip.text_encoder.*`), at small widths, and
torch.save'd as ImageReward.pt beside a med_config.json and a vocab.txt, as released.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from rewards.bases import BaseInvalid, inspect_base
from rewards.imagereward import IMAGEREWARD_MEAN, IMAGEREWARD_STD
from rewards.reward_model import BlipRewardModel, RewardModelConfig

VISION_WIDTH, VISION_INNER, VISION_LAYERS, PATCH, IMAGE = 128, 256, 2, 8, 32
TEXT_WIDTH, TEXT_INNER, TEXT_LAYERS, TEXT_HEADS, POSITIONS = 64, 128, 2, 2, 40
MLP_WIDTHS = (32, 16, 8, 4)  # the release: 1024, 128, 64, 16
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "make", "the", "cat", "black", "sky"]
VOCAB_ROWS = len(WORDS) + 2  # + BLIP's [DEC] and [ENC], as 30522 + 2 in the release


def _linear(state: dict, name: str, inputs: int, outputs: int, generator: torch.Generator) -> None:
    state[f"{name}.weight"] = torch.randn(outputs, inputs, generator=generator) * 0.05
    state[f"{name}.bias"] = torch.randn(outputs, generator=generator) * 0.05


def _norm(state: dict, name: str, width: int, generator: torch.Generator) -> None:
    state[f"{name}.weight"] = 1 + 0.1 * torch.randn(width, generator=generator)
    state[f"{name}.bias"] = 0.1 * torch.randn(width, generator=generator)


def vit_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """timm-style ViT, as ImageReward/models/BLIP/vit.py names it."""
    s: dict[str, torch.Tensor] = {}
    v = "blip.visual_encoder"
    grid = IMAGE // PATCH
    s[f"{v}.cls_token"] = torch.randn(1, 1, VISION_WIDTH, generator=generator) * 0.02
    s[f"{v}.pos_embed"] = torch.randn(1, grid * grid + 1, VISION_WIDTH, generator=generator) * 0.02
    s[f"{v}.patch_embed.proj.weight"] = torch.randn(
        VISION_WIDTH, 3, PATCH, PATCH, generator=generator
    ) * 0.05  # fmt: skip
    s[f"{v}.patch_embed.proj.bias"] = torch.randn(VISION_WIDTH, generator=generator) * 0.05
    for i in range(VISION_LAYERS):
        b = f"{v}.blocks.{i}"
        _norm(s, f"{b}.norm1", VISION_WIDTH, generator)
        _linear(s, f"{b}.attn.qkv", VISION_WIDTH, 3 * VISION_WIDTH, generator)
        _linear(s, f"{b}.attn.proj", VISION_WIDTH, VISION_WIDTH, generator)
        _norm(s, f"{b}.norm2", VISION_WIDTH, generator)
        _linear(s, f"{b}.mlp.fc1", VISION_WIDTH, VISION_INNER, generator)
        _linear(s, f"{b}.mlp.fc2", VISION_INNER, VISION_WIDTH, generator)
    _norm(s, f"{v}.norm", VISION_WIDTH, generator)
    return s


def bert_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """med.py's BertModel(add_pooling_layer=False) with cross-attention to the ViT."""
    s: dict[str, torch.Tensor] = {}
    t = "blip.text_encoder"
    s[f"{t}.embeddings.position_ids"] = torch.arange(POSITIONS).expand((1, -1))  # a buffer
    s[f"{t}.embeddings.word_embeddings.weight"] = torch.randn(
        VOCAB_ROWS, TEXT_WIDTH, generator=generator
    )  # fmt: skip
    s[f"{t}.embeddings.position_embeddings.weight"] = torch.randn(
        POSITIONS, TEXT_WIDTH, generator=generator
    )  # fmt: skip
    _norm(s, f"{t}.embeddings.LayerNorm", TEXT_WIDTH, generator)
    for i in range(TEXT_LAYERS):
        layer = f"{t}.encoder.layer.{i}"
        for block, source in (("attention", TEXT_WIDTH), ("crossattention", VISION_WIDTH)):
            _linear(s, f"{layer}.{block}.self.query", TEXT_WIDTH, TEXT_WIDTH, generator)
            _linear(s, f"{layer}.{block}.self.key", source, TEXT_WIDTH, generator)
            _linear(s, f"{layer}.{block}.self.value", source, TEXT_WIDTH, generator)
            _linear(s, f"{layer}.{block}.output.dense", TEXT_WIDTH, TEXT_WIDTH, generator)
            _norm(s, f"{layer}.{block}.output.LayerNorm", TEXT_WIDTH, generator)
        _linear(s, f"{layer}.intermediate.dense", TEXT_WIDTH, TEXT_INNER, generator)
        _linear(s, f"{layer}.output.dense", TEXT_INNER, TEXT_WIDTH, generator)
        _norm(s, f"{layer}.output.LayerNorm", TEXT_WIDTH, generator)
    return s


def mlp_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """ImageReward.py's MLP: nn.Sequential with Linear layers at 0, 2, 4, 6, 7."""
    s: dict[str, torch.Tensor] = {}
    widths = [TEXT_WIDTH, *MLP_WIDTHS, 1]
    for index, inputs, outputs in zip((0, 2, 4, 6, 7), widths[:-1], widths[1:], strict=True):
        _linear(s, f"mlp.layers.{index}", inputs, outputs, generator)
    return s


def imagereward_state(seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = OrderedDict({**vit_state(generator), **bert_state(generator), **mlp_state(generator)})
    # BLIP_Pretrain's contrastive projections are in the release too; they are not used.
    _linear(state, "blip.vision_proj", VISION_WIDTH, 16, generator)
    _linear(state, "blip.text_proj", TEXT_WIDTH, 16, generator)
    return state


MED_CONFIG = {  # the released med_config.json, at this test's widths
    "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "hidden_size": TEXT_WIDTH, "initializer_range": 0.02,
    "intermediate_size": TEXT_INNER, "layer_norm_eps": 1e-12,
    "max_position_embeddings": POSITIONS, "model_type": "bert",
    "num_attention_heads": TEXT_HEADS, "num_hidden_layers": TEXT_LAYERS, "pad_token_id": 0,
    "type_vocab_size": 2, "vocab_size": VOCAB_ROWS, "encoder_width": 768,
    "add_cross_attention": True,
}  # fmt: skip


def write_imagereward(directory: Path, state: dict | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(imagereward_state() if state is None else state, directory / "ImageReward.pt")
    (directory / "med_config.json").write_text(json.dumps(MED_CONFIG, indent=2))
    (directory / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    return directory


@pytest.fixture(scope="module")
def imagereward_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_imagereward(tmp_path_factory.mktemp("imagereward") / "ImageReward")


@pytest.fixture(scope="module")
def warm_model(imagereward_dir: Path) -> BlipRewardModel:
    return BlipRewardModel.build(RewardModelConfig(base=str(imagereward_dir))).eval()


def parameters_of(state: dict[str, torch.Tensor]) -> int:
    kept = ("blip.visual_encoder.", "blip.text_encoder.", "mlp.")
    return sum(
        t.numel() for k, t in state.items() if k.startswith(kept) and not k.endswith("position_ids")
    )


# --- checked torch-free -----------------------------------------------------------------------


def test_it_inspects_imagereward_from_its_shapes(imagereward_dir: Path) -> None:
    info = inspect_base(imagereward_dir)
    assert info.kind == "imagereward" and info.weights_file == "ImageReward.pt"
    assert info.path == str(imagereward_dir.resolve())
    assert info.parameters == parameters_of(imagereward_state())
    assert (info.image_size, info.vision_hidden, info.vision_layers) == (
        IMAGE, VISION_WIDTH, VISION_LAYERS,
    )  # fmt: skip
    assert (info.text_hidden, info.text_layers) == (TEXT_WIDTH, TEXT_LAYERS)
    assert inspect_base(imagereward_dir / "ImageReward.pt") == info  # the file names it too


def test_it_refuses_imagereward_without_a_vocabulary(tmp_path: Path) -> None:
    directory = write_imagereward(tmp_path / "ImageReward")
    (directory / "vocab.txt").unlink()
    with pytest.raises(BaseInvalid, match=r"no vocab\.txt.*bert-base-uncased"):
        inspect_base(directory)


def test_it_refuses_imagereward_without_med_config(tmp_path: Path) -> None:
    directory = write_imagereward(tmp_path / "ImageReward")
    (directory / "med_config.json").unlink()
    with pytest.raises(BaseInvalid, match=r"no med_config\.json"):
        inspect_base(directory)


def test_it_refuses_an_imagereward_state_dict_missing_a_weight(tmp_path: Path) -> None:
    state = imagereward_state()
    missing = "blip.text_encoder.encoder.layer.1.crossattention.self.key.weight"
    del state[missing]
    directory = write_imagereward(tmp_path / "ImageReward", state)
    with pytest.raises(
        BaseInvalid, match=rf"missing 1 weights \(blip\.text_encoder\.\*\): {missing}"
    ):
        inspect_base(directory)


def test_it_refuses_a_vocabulary_larger_than_the_embeddings(tmp_path: Path) -> None:
    directory = write_imagereward(tmp_path / "ImageReward")
    (directory / "vocab.txt").write_text("\n".join([*WORDS, "a", "b", "c"]) + "\n")
    with pytest.raises(BaseInvalid, match="13 tokens but .* 12 rows"):
        inspect_base(directory)


# --- mapped onto the reward model --------------------------------------------------------------


def test_every_mapped_weight_equals_the_source_tensor(warm_model: BlipRewardModel) -> None:
    source = imagereward_state()
    vision = warm_model.vision.state_dict()
    v = "blip.visual_encoder"
    pairs = {
        "embeddings.class_embedding": f"{v}.cls_token",
        "embeddings.position_embedding": f"{v}.pos_embed",
        "embeddings.patch_embedding.weight": f"{v}.patch_embed.proj.weight",
        "embeddings.patch_embedding.bias": f"{v}.patch_embed.proj.bias",
        "post_layernorm.weight": f"{v}.norm.weight",
        "post_layernorm.bias": f"{v}.norm.bias",
    }
    renames = {
        "layer_norm1": "norm1", "layer_norm2": "norm2", "self_attn.qkv": "attn.qkv",
        "self_attn.projection": "attn.proj", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
    }  # fmt: skip
    for i in range(VISION_LAYERS):
        for ours, theirs in renames.items():
            for param in ("weight", "bias"):
                pairs[f"encoder.layers.{i}.{ours}.{param}"] = f"{v}.blocks.{i}.{theirs}.{param}"
    assert set(pairs) == set(vision)
    for ours, theirs in pairs.items():
        assert torch.equal(vision[ours], source[theirs]), ours
    text = warm_model.text.state_dict()
    assert {f"blip.text_encoder.{k}" for k in text} == {
        k for k in source if k.startswith("blip.text_encoder.") and not k.endswith("position_ids")
    }
    for name, tensor in text.items():
        assert torch.equal(tensor, source[f"blip.text_encoder.{name}"]), name
    head = warm_model.overall_head.state_dict()
    assert set(head) == {f"{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")}
    for name, tensor in head.items():
        assert torch.equal(tensor, source[f"mlp.layers.{name}"]), name


def test_it_keeps_imagerewards_head_shape_and_normalisation(warm_model: BlipRewardModel) -> None:
    config = warm_model.config
    assert config.overall_head == "imagereward" and config.overall_head_widths == list(MLP_WIDTHS)
    assert (config.score_mean, config.score_std) == (IMAGEREWARD_MEAN, IMAGEREWARD_STD)
    assert warm_model.image_size == IMAGE
    assert warm_model.vision.config.layer_norm_eps == 1e-6  # timm's ViT, not Blip's 1e-5
    assert warm_model.text.config.num_attention_heads == TEXT_HEADS  # from med_config.json
    assert not warm_model.is_random_init


def test_the_head_reproduces_imagerewards_formula(warm_model: BlipRewardModel) -> None:
    # ImageReward.py: rewards = self.mlp(txt_features); (rewards - self.mean) / self.std,
    # the MLP being Linear layers with dropouts between (identity in eval) and no activation.
    source = imagereward_state()
    cls_state = torch.randn(5, TEXT_WIDTH, generator=torch.Generator().manual_seed(3))
    expected = cls_state
    for index in (0, 2, 4, 6, 7):
        expected = F.linear(
            expected, source[f"mlp.layers.{index}.weight"], source[f"mlp.layers.{index}.bias"]
        )
    expected = (expected.squeeze(-1) - IMAGEREWARD_MEAN) / IMAGEREWARD_STD
    with torch.no_grad():
        overall = warm_model._heads(cls_state).overall
    assert torch.allclose(overall, expected, atol=1e-6)


def timm_vit(state: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
    """ImageReward's VisionTransformer.forward (models/BLIP/vit.py), written out: heads of
    width 64 as in ViT-L, LayerNorm eps 1e-6, exact GELU."""

    def linear(h: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(h, state[f"{name}.weight"], state[f"{name}.bias"])

    def norm(h: torch.Tensor, name: str) -> torch.Tensor:
        weight, bias = state[f"{name}.weight"], state[f"{name}.bias"]
        return F.layer_norm(h, (VISION_WIDTH,), weight, bias, eps=1e-6)

    v = "blip.visual_encoder"
    weight, bias = state[f"{v}.patch_embed.proj.weight"], state[f"{v}.patch_embed.proj.bias"]
    x = F.conv2d(pixels, weight, bias, stride=PATCH).flatten(2).transpose(1, 2)
    x = torch.cat([state[f"{v}.cls_token"].expand(x.shape[0], -1, -1), x], dim=1)
    x = x + state[f"{v}.pos_embed"]
    heads = VISION_WIDTH // 64
    for i in range(VISION_LAYERS):
        b = f"{v}.blocks.{i}"
        n, t, c = x.shape
        qkv = linear(norm(x, f"{b}.norm1"), f"{b}.attn.qkv")
        query, key, value = qkv.reshape(n, t, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        attention = ((query @ key.transpose(-2, -1)) / math.sqrt(c // heads)).softmax(-1)
        x = x + linear((attention @ value).transpose(1, 2).reshape(n, t, c), f"{b}.attn.proj")
        x = x + linear(F.gelu(linear(norm(x, f"{b}.norm2"), f"{b}.mlp.fc1")), f"{b}.mlp.fc2")
    return norm(x, f"{v}.norm")


def test_the_vision_tower_computes_what_imagerewards_vit_computes(
    warm_model: BlipRewardModel,
) -> None:
    pixels = torch.randn(2, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = warm_model.vision(pixel_values=pixels).last_hidden_state
        theirs = timm_vit(imagereward_state(), pixels)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_it_tokenizes_prompts_with_the_vocabulary_beside_the_weights(
    warm_model: BlipRewardModel,
) -> None:
    ids, _ = warm_model.tokenize(["make the cat black"])
    assert ids.tolist() == [[2, 5, 6, 7, 8, 3]]  # [CLS] make the cat black [SEP]
    assert len(warm_model.tokenizer) == VOCAB_ROWS  # with BLIP's [DEC] and [ENC]


def test_a_version_trained_from_imagereward_saves_and_loads(
    warm_model: BlipRewardModel, tmp_path: Path
) -> None:
    warm_model.save(tmp_path / "version")
    loaded = BlipRewardModel.load(tmp_path / "version")
    assert loaded.config.overall_head == "imagereward"
    assert loaded.config.score_mean == IMAGEREWARD_MEAN
    cls_state = torch.randn(3, TEXT_WIDTH)
    with torch.no_grad():
        assert torch.equal(loaded._heads(cls_state).overall, warm_model._heads(cls_state).overall)


def test_the_default_head_is_unchanged() -> None:
    config = RewardModelConfig()
    assert (config.overall_head, config.score_mean, config.score_std) == ("short", 0.0, 1.0)
    model = BlipRewardModel.build(config)
    assert [type(m).__name__ for m in model.overall_head] == ["Linear", "GELU", "Dropout", "Linear"]
