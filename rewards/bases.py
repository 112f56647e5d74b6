"""Check a base checkpoint before anything trains on it, without torch.

A base is named once (a run request's `base`, the admin form, `train_reward`,
`manage.py add_base`) and checked then, in the web process, which never imports torch
(tests/training/test_light_imports.py). So everything here reads files only: config.json
and med_config.json as JSON, a safetensors header (8-byte little-endian length, then a
JSON map name -> dtype, shape), and torch's zip pickles through a restricted unpickler
that never runs anything a file names (see `_InertUnpickler`).

Three kinds of base:

- `tiny`: the random-init model of rewards/tiny.py (its shapes are restated here, torch-free;
  tests/rewards/test_bases.py compares them with the real model);
- `blip-itm`: a transformers `BlipForImageTextRetrieval` directory, e.g. a downloaded
  Salesforce/blip-itm-base-coco. Its `vision_model.*` and `text_encoder.*` weights (the
  text encoder with cross-attention) must all be there with the shapes config.json implies;
  a captioning checkpoint (`BlipForConditionalGeneration`) has a text *decoder* instead and
  is refused, naming what is missing;
- `imagereward`: ImageReward's released `ImageReward.pt` state dict with its
  `med_config.json` (Xu et al. 2023; THUDM/ImageReward, ImageReward/ImageReward.py) and a
  BERT `vocab.txt`, mapped onto the same model by rewards/imagereward.py.

`parameters` counts the weights the reward model keeps (vision tower + text encoder; a
blip-itm base's projection and ITM heads are dropped, ImageReward's MLP head is kept).
"""

from __future__ import annotations

import json
import math
import pickle
import re
import struct
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rewards.config import TINY  # torch-free, like this module

KINDS = ("tiny", "blip-itm", "imagereward")
ITM_ARCHITECTURE = "BlipForImageTextRetrieval"

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"
TORCH_BIN_INDEX = "pytorch_model.bin.index.json"
IMAGEREWARD_WEIGHTS = "ImageReward.pt"
MED_CONFIG = "med_config.json"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json")
PREPROCESSOR = "preprocessor_config.json"

# Buffers a checkpoint may carry that no parameter corresponds to (older BERT exports save
# `position_ids`); transformers ignores them, so the check does too.
IGNORED_SUFFIXES = ("position_ids",)
SHOW = 5  # names quoted in a message before "and N more"

# transformers' BlipVisionConfig / BlipTextConfig defaults, for keys a config.json omits
# (test_bases.py checks them against transformers).
VISION_DEFAULTS = {
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "image_size": 384, "patch_size": 16,
}  # fmt: skip
TEXT_DEFAULTS = {
    "vocab_size": 30524, "hidden_size": 768, "encoder_hidden_size": 768,
    "intermediate_size": 3072, "num_hidden_layers": 12, "max_position_embeddings": 512,
}  # fmt: skip

# rewards/tiny.py's model (TINY_* constants and the size of its built-in vocabulary).
TINY_VISION = {
    "hidden_size": 96, "intermediate_size": 192, "num_hidden_layers": 4,
    "image_size": 64, "patch_size": 8,
}  # fmt: skip
TINY_TEXT = {
    "vocab_size": 293, "hidden_size": 96, "encoder_hidden_size": 96,
    "intermediate_size": 192, "num_hidden_layers": 4, "max_position_embeddings": 64,
}  # fmt: skip

Shapes = dict[str, tuple[int, ...]]


class BaseInvalid(ValueError):
    """A base that cannot be used; the message says which file and what is wrong or missing."""


@dataclass(frozen=True)
class BaseInfo:
    kind: str  # "tiny" | "blip-itm" | "imagereward"
    path: str  # resolved absolute directory ("tiny" for tiny)
    parameters: int  # counted from the weight shapes the reward model keeps
    image_size: int
    vision_hidden: int
    text_hidden: int
    vision_layers: int
    text_layers: int
    weights_file: str  # e.g. "model.safetensors", "ImageReward.pt"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def inspect_base(base: str | Path) -> BaseInfo:
    """What `base` is, after checking it can be loaded; raises BaseInvalid saying why not."""
    if str(base) == TINY:
        return _tiny_info()
    path = Path(base).expanduser()
    if not path.exists():
        raise BaseInvalid(f"{path} does not exist; pass 'tiny' or a local checkpoint directory")
    path = path.resolve()
    if is_imagereward(path):
        return inspect_imagereward(path.parent if path.is_file() else path)
    if not path.is_dir():
        raise BaseInvalid(f"{path} is a file; a base is a checkpoint directory")
    return inspect_blip_itm(path)


def is_imagereward(base: str | Path) -> bool:
    """Whether `base` names ImageReward's checkpoint (its directory or its ImageReward.pt)
    rather than a transformers directory; it says nothing about whether it is valid."""
    if str(base) == TINY:
        return False
    path = Path(base).expanduser()
    if path.is_file():
        return path.name == IMAGEREWARD_WEIGHTS
    return (path / IMAGEREWARD_WEIGHTS).is_file() or (path / MED_CONFIG).is_file()


# --- tiny ------------------------------------------------------------------------------


def _tiny_info() -> BaseInfo:
    shapes = expected_blip_shapes(TINY_VISION, TINY_TEXT)
    return _info(TINY, TINY, shapes, TINY_VISION, TINY_TEXT, weights_file="(random init)")


# --- blip-itm ----------------------------------------------------------------------------


def inspect_blip_itm(path: Path) -> BaseInfo:
    config = read_json(path / "config.json", missing=_no_config_message(path))
    vision, text = _blip_sub_configs(path / "config.json", config)
    shapes, weights_file = read_weight_shapes(path)
    expected = expected_blip_shapes(vision, text)
    problems = _shape_problems(expected, shapes)
    architectures = config.get("architectures") or []
    if architectures and ITM_ARCHITECTURE not in architectures:
        raise BaseInvalid(
            f"{path / 'config.json'} declares {', '.join(map(str, architectures))}; a reward "
            f"base needs {ITM_ARCHITECTURE} (an ITM text encoder with cross-attention)"
            + (f": {problems}" if problems else "")
        )
    if problems:
        raise BaseInvalid(f"{path / weights_file} does not fit {ITM_ARCHITECTURE}: {problems}")
    _require_tokenizer(path)
    if not (path / PREPROCESSOR).is_file():
        raise BaseInvalid(
            f"{path} has no {PREPROCESSOR} (BLIP's image processing); save it beside the "
            "weights, e.g. BlipProcessor.from_pretrained(...).save_pretrained(directory)"
        )
    return _info("blip-itm", str(path), expected, vision, text, weights_file)


def _no_config_message(path: Path) -> str:
    return (
        f"{path} is not a BLIP checkpoint directory (no config.json) nor an ImageReward one "
        f"({IMAGEREWARD_WEIGHTS} + {MED_CONFIG}); pass 'tiny' or a local copy of e.g. "
        "Salesforce/blip-itm-base-coco"
    )


def _blip_sub_configs(file: Path, config: dict[str, Any]) -> tuple[dict, dict]:
    if config.get("model_type") != "blip":
        raise BaseInvalid(
            f"{file} has model_type {config.get('model_type')!r}; a reward base is a BLIP "
            f"checkpoint (model_type 'blip', {ITM_ARCHITECTURE})"
        )
    vision = {**VISION_DEFAULTS, **(config.get("vision_config") or {})}
    text = {**TEXT_DEFAULTS, **(config.get("text_config") or {})}
    return vision, text


def expected_blip_shapes(vision: Mapping[str, Any], text: Mapping[str, Any]) -> Shapes:
    """Every weight of BlipForImageTextRetrieval's `vision_model` and `text_encoder`, with
    its shape, as transformers names them (test_bases.py compares this with the keys
    `save_pretrained` writes)."""
    return {
        **{f"vision_model.{k}": v for k, v in _vision_shapes(vision).items()},
        **{f"text_encoder.{k}": v for k, v in _text_shapes(text).items()},
    }


def _vision_shapes(config: Mapping[str, Any]) -> Shapes:
    width, inner = int(config["hidden_size"]), int(config["intermediate_size"])
    patch = int(config["patch_size"])
    positions = (int(config["image_size"]) // patch) ** 2 + 1
    shapes: Shapes = {
        "embeddings.class_embedding": (1, 1, width),
        "embeddings.patch_embedding.weight": (width, 3, patch, patch),
        "embeddings.patch_embedding.bias": (width,),
        "embeddings.position_embedding": (1, positions, width),
        **_norm("post_layernorm", width),
    }
    for i in range(int(config["num_hidden_layers"])):
        layer = f"encoder.layers.{i}"
        shapes.update(_norm(f"{layer}.layer_norm1", width))
        shapes.update(_linear(f"{layer}.self_attn.qkv", width, 3 * width))  # fused q, k, v
        shapes.update(_linear(f"{layer}.self_attn.projection", width, width))
        shapes.update(_norm(f"{layer}.layer_norm2", width))
        shapes.update(_linear(f"{layer}.mlp.fc1", width, inner))
        shapes.update(_linear(f"{layer}.mlp.fc2", inner, width))
    return shapes


def _text_shapes(config: Mapping[str, Any]) -> Shapes:
    width, inner = int(config["hidden_size"]), int(config["intermediate_size"])
    visual = int(config["encoder_hidden_size"])
    shapes: Shapes = {
        "embeddings.word_embeddings.weight": (int(config["vocab_size"]), width),
        "embeddings.position_embeddings.weight": (int(config["max_position_embeddings"]), width),
        **_norm("embeddings.LayerNorm", width),
    }
    for i in range(int(config["num_hidden_layers"])):
        layer = f"encoder.layer.{i}"
        for block, source in (("attention", width), ("crossattention", visual)):
            shapes.update(_linear(f"{layer}.{block}.self.query", width, width))
            shapes.update(_linear(f"{layer}.{block}.self.key", source, width))
            shapes.update(_linear(f"{layer}.{block}.self.value", source, width))
            shapes.update(_linear(f"{layer}.{block}.output.dense", width, width))
            shapes.update(_norm(f"{layer}.{block}.output.LayerNorm", width))
        shapes.update(_linear(f"{layer}.intermediate.dense", width, inner))
        shapes.update(_linear(f"{layer}.output.dense", inner, width))
        shapes.update(_norm(f"{layer}.output.LayerNorm", width))
    return shapes


def _linear(name: str, inputs: int, outputs: int) -> Shapes:
    return {f"{name}.weight": (outputs, inputs), f"{name}.bias": (outputs,)}


def _norm(name: str, width: int) -> Shapes:
    return {f"{name}.weight": (width,), f"{name}.bias": (width,)}


def _require_tokenizer(path: Path, needed: str = "the BERT tokenizer") -> None:
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise BaseInvalid(
            f"{path} has no tokenizer ({' or '.join(TOKENIZER_FILES)}); save {needed} "
            "beside the weights, e.g. BlipProcessor.from_pretrained(...).save_pretrained(directory)"
        )


# --- comparing weights -------------------------------------------------------------------


def _shape_problems(expected: Shapes, found: Shapes, prefixes: Iterable[str] = ()) -> str:
    """'' when `found` holds every expected weight with its shape; otherwise what is
    missing, unexpected (under the expected weights' prefixes) or the wrong shape."""
    scope = tuple(prefixes) or tuple({name.split(".", 1)[0] + "." for name in expected})
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(
        name
        for name in set(found) - set(expected)
        if name.startswith(scope) and not name.endswith(IGNORED_SUFFIXES)
    )
    wrong = [
        f"{name} {list(found[name])} (expected {list(shape)})"
        for name, shape in expected.items()
        if name in found and tuple(found[name]) != tuple(shape)
    ]
    parts = []
    if missing:
        groups = sorted({_group(name) for name in missing})
        parts.append(f"missing {len(missing)} weights ({', '.join(groups)}): {_some(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected weights: {_some(unexpected)}")
    if wrong:
        parts.append(f"{len(wrong)} of the wrong shape: {_some(wrong)}")
    return "; ".join(parts)


def _group(name: str) -> str:
    """The tower a weight belongs to: `text_encoder.*`, or `blip.text_encoder.*` in
    ImageReward's state dict."""
    parts = name.split(".")
    depth = 2 if parts[0] == "blip" and len(parts) > 2 else 1
    return ".".join(parts[:depth]) + ".*"


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:SHOW])
    return shown + (f" and {len(names) - SHOW} more" if len(names) > SHOW else "")


def _info(
    kind: str,
    path: str,
    shapes: Shapes,
    vision: Mapping[str, Any],
    text: Mapping[str, Any],
    weights_file: str,
) -> BaseInfo:
    return BaseInfo(
        kind=kind,
        path=path,
        parameters=count_parameters(shapes),
        image_size=int(vision["image_size"]),
        vision_hidden=int(vision["hidden_size"]),
        text_hidden=int(text["hidden_size"]),
        vision_layers=int(vision["num_hidden_layers"]),
        text_layers=int(text["num_hidden_layers"]),
        weights_file=weights_file,
    )


def count_parameters(shapes: Shapes) -> int:
    return sum(math.prod(shape) for shape in shapes.values())


# --- reading weight files without torch --------------------------------------------------


def read_weight_shapes(path: Path) -> tuple[Shapes, str]:
    """(name -> shape, the file named) of a transformers directory's weights, preferring
    safetensors as transformers does; sharded checkpoints are read through their index."""
    if (path / SAFETENSORS).is_file():
        return safetensors_shapes(path / SAFETENSORS), SAFETENSORS
    if (path / SAFETENSORS_INDEX).is_file():
        return _sharded_shapes(path, SAFETENSORS_INDEX, safetensors_shapes), SAFETENSORS_INDEX
    if (path / TORCH_BIN).is_file():
        return torch_file_shapes(path / TORCH_BIN), TORCH_BIN
    if (path / TORCH_BIN_INDEX).is_file():
        return _sharded_shapes(path, TORCH_BIN_INDEX, torch_file_shapes), TORCH_BIN_INDEX
    raise BaseInvalid(
        f"{path} has no weights ({SAFETENSORS}, {SAFETENSORS_INDEX}, {TORCH_BIN} or "
        f"{TORCH_BIN_INDEX})"
    )


def _sharded_shapes(path: Path, index_name: str, reader: Any) -> Shapes:
    index = read_json(path / index_name, missing=f"{path / index_name} is missing")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise BaseInvalid(f"{path / index_name} has no weight_map")
    shapes: Shapes = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = path / str(shard)
        if Path(str(shard)).name != str(shard) or not shard_path.is_file():
            raise BaseInvalid(f"{path / index_name} names shard {shard!r}, which is not in {path}")
        shapes.update(reader(shard_path))
    return shapes


def safetensors_shapes(file: Path) -> Shapes:
    """The header of a safetensors file: u64 little-endian length, then JSON (the format's
    spec, huggingface/safetensors README)."""
    with file.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise BaseInvalid(f"{file} is not a safetensors file (shorter than its header)")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(file.stat().st_size - 8, 100_000_000):
            raise BaseInvalid(f"{file} is not a safetensors file (header length {length})")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BaseInvalid(f"{file} has an unreadable safetensors header: {error}") from None
    if not isinstance(header, dict):
        raise BaseInvalid(f"{file} has an unreadable safetensors header (not a JSON object)")
    return {
        name: tuple(int(n) for n in entry["shape"])
        for name, entry in header.items()
        if name != "__metadata__" and isinstance(entry, dict)
    }


def torch_file_shapes(file: Path) -> Shapes:
    """Tensor names and shapes of a `torch.save` zip file, read by `_InertUnpickler`: no
    class or function the file names is ever imported or called."""
    if not zipfile.is_zipfile(file):
        raise BaseInvalid(
            f"{file} is not a torch zip file (torch.save's format since torch 1.6); re-save it "
            "with torch.save(state_dict, path) or as safetensors"
        )
    with zipfile.ZipFile(file) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise BaseInvalid(f"{file} has {len(pickles)} data.pkl records, not one")
        with archive.open(pickles[0]) as handle:
            try:
                state = _InertUnpickler(handle, file).load()
            except BaseInvalid:
                raise
            except Exception as error:  # a truncated or odd pickle: say so, never run it
                raise BaseInvalid(f"{file} has an unreadable pickle: {error}") from None
    return _tensor_shapes(file, state)


def _tensor_shapes(file: Path, state: Any) -> Shapes:
    # A bare state dict (ImageReward.pt, pytorch_model.bin) or one wrapped as {"model": ...}
    # / {"state_dict": ...}, as training scripts often save it.
    if isinstance(state, dict) and not any(isinstance(v, _TensorStub) for v in state.values()):
        nested = [state.get(key) for key in ("state_dict", "model")]
        state = next((value for value in nested if isinstance(value, dict)), state)
    if not isinstance(state, dict):
        raise BaseInvalid(f"{file} does not hold a state dict (found {type(state).__name__})")
    return {str(k): v.shape for k, v in state.items() if isinstance(v, _TensorStub)}


@dataclass(frozen=True)
class _TensorStub:
    shape: tuple[int, ...]


class _StorageStub:
    """Stands in for a storage (its bytes are never read) and for torch's storage classes."""

    def __init__(self, *args: Any) -> None:
        self.args = args


class _InertDict(dict):
    """OrderedDict's stand-in; torch's state dicts carry `_metadata` as pickled state."""

    def __setstate__(self, state: Any) -> None:
        pass


def _rebuild_tensor(storage: Any, offset: Any, size: Any, *rest: Any) -> _TensorStub:
    return _TensorStub(tuple(int(n) for n in size))


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    return data


# The only globals a saved state dict refers to. Anything else (os.system, builtins.eval,
# a class's constructor) is refused rather than resolved: unpickling calls what
# find_class returns, so returning only these inert stand-ins is what keeps a malicious
# file from running code at check time.
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _InertDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): tuple,
}
_STORAGE_NAME = re.compile(r"^[A-Za-z0-9]*Storage$")


class _InertUnpickler(pickle.Unpickler):
    def __init__(self, handle: Any, file: Path) -> None:
        super().__init__(handle)
        self.file = file

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module in ("torch", "torch.storage") and _STORAGE_NAME.match(name):
            return _StorageStub  # FloatStorage, UntypedStorage, ...
        if module == "torch" and name in _DTYPE_NAMES:
            return name
        raise BaseInvalid(
            f"{self.file} refers to {module}.{name}, which a file of weights never needs; "
            "it was not loaded (save weights as safetensors or a plain state dict)"
        )

    def persistent_load(self, pid: Any) -> _StorageStub:
        # torch's zip format: ("storage", storage type, key, location, numel); the bytes
        # under data/<key> are never read, only the shapes in the pickle matter.
        return _StorageStub(pid)


_DTYPE_NAMES = {
    "float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8",
    "bool",
}  # fmt: skip


def read_json(file: Path, missing: str) -> dict[str, Any]:
    if not file.is_file():
        raise BaseInvalid(missing)
    try:
        data = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BaseInvalid(f"{file} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise BaseInvalid(f"{file} is not a JSON object")
    return data


# --- imagereward ---------------------------------------------------------------------------


def inspect_imagereward(path: Path) -> BaseInfo:
    """ImageReward's directory: ImageReward.pt, med_config.json and a BERT vocab.txt (the
    bert-base-uncased tokenizer ImageReward uses is not inside ImageReward.pt)."""
    weights = path / IMAGEREWARD_WEIGHTS
    if not weights.is_file():
        raise BaseInvalid(f"{path} has {MED_CONFIG} but no {IMAGEREWARD_WEIGHTS}")
    med = read_json(
        path / MED_CONFIG,
        missing=f"{path} has {IMAGEREWARD_WEIGHTS} but no {MED_CONFIG} (it is released "
        "beside it, THUDM/ImageReward on the Hugging Face hub)",
    )
    shapes = torch_file_shapes(weights)
    layout = imagereward_layout(weights, shapes, med)
    problems = _shape_problems(imagereward_shapes(layout), shapes, prefixes=IMAGEREWARD_PREFIXES)
    if problems:
        raise BaseInvalid(f"{weights} is not ImageReward's state dict: {problems}")
    _require_imagereward_vocab(path, layout["text"]["vocab_size"])
    return _info(
        "imagereward",
        str(path),
        imagereward_shapes(layout),
        layout["vision"],
        layout["text"],
        weights.name,
    )


IMAGEREWARD_PREFIXES = ("blip.visual_encoder.", "blip.text_encoder.", "mlp.")
_VIT = "blip.visual_encoder."
_BERT = "blip.text_encoder."
_VIT_FC1 = "blocks.0.mlp.fc1.weight"
_WORDS = "embeddings.word_embeddings.weight"
_POSITIONS = "embeddings.position_embeddings.weight"
_TEXT_FC1 = "encoder.layer.0.intermediate.dense.weight"
_CROSS_KEY = "encoder.layer.0.crossattention.self.key.weight"


def imagereward_layout(file: Path, shapes: Shapes, med: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture of an ImageReward state dict, read from its shapes (ImageReward
    fixes ViT-L/16 at 224 px, ImageReward/ImageReward.py; a smaller copy reads the same way)
    and med_config.json (the text encoder's heads and epsilon)."""
    needed = [
        *(f"{_VIT}{name}" for name in ("patch_embed.proj.weight", "pos_embed", _VIT_FC1)),
        *(f"{_BERT}{name}" for name in (_WORDS, _POSITIONS, _TEXT_FC1, _CROSS_KEY)),
        "mlp.layers.0.weight",
    ]
    absent = [name for name in needed if name not in shapes]
    if absent:
        raise BaseInvalid(
            f"{file} is not ImageReward's state dict (blip.visual_encoder.*, "
            f"blip.text_encoder.*, mlp.layers.*): missing {len(absent)} weights: {_some(absent)}"
        )
    width, _, patch, _ = shapes[f"{_VIT}patch_embed.proj.weight"]
    grid = math.isqrt(shapes[f"{_VIT}pos_embed"][1] - 1)
    vocab, text_width = shapes[f"{_BERT}{_WORDS}"]
    vision = {
        "hidden_size": width,
        "intermediate_size": shapes[f"{_VIT}{_VIT_FC1}"][0],
        "num_hidden_layers": _count_layers(shapes, rf"{re.escape(_VIT)}blocks\.(\d+)\."),
        "image_size": grid * patch,
        "patch_size": patch,
    }
    text = {
        "vocab_size": vocab,
        "hidden_size": text_width,
        "encoder_hidden_size": shapes[f"{_BERT}{_CROSS_KEY}"][1],  # the ViT's width
        "intermediate_size": shapes[f"{_BERT}{_TEXT_FC1}"][0],
        "num_hidden_layers": _count_layers(shapes, rf"{re.escape(_BERT)}encoder\.layer\.(\d+)\."),
        "max_position_embeddings": shapes[f"{_BERT}{_POSITIONS}"][0],
        "num_attention_heads": int(med.get("num_attention_heads", 12)),
        "layer_norm_eps": float(med.get("layer_norm_eps", 1e-12)),
    }
    head = _mlp_widths(shapes)
    return {"vision": vision, "text": text, "head": head}


def _count_layers(shapes: Shapes, pattern: str) -> int:
    indices = {int(m.group(1)) for name in shapes if (m := re.match(pattern, name))}
    return max(indices) + 1 if indices else 0


# ImageReward's MLP: Linear(768,1024) Dropout(0.2) Linear(1024,128) Dropout(0.2)
# Linear(128,64) Dropout(0.1) Linear(64,16) Linear(16,1): nn.Sequential indices 0 2 4 6 7.
IMAGEREWARD_MLP_INDICES = (0, 2, 4, 6, 7)


def _mlp_widths(shapes: Shapes) -> list[int]:
    """The hidden widths of ImageReward's MLP (1024, 128, 64, 16 in the release)."""
    return [shapes.get(f"mlp.layers.{i}.weight", (0,))[0] for i in IMAGEREWARD_MLP_INDICES[:-1]]


def imagereward_shapes(layout: Mapping[str, Any]) -> Shapes:
    """Every weight ImageReward's state dict must hold for the mapping, with its shape."""
    vision, text = layout["vision"], layout["text"]
    width, inner, patch = vision["hidden_size"], vision["intermediate_size"], vision["patch_size"]
    positions = (vision["image_size"] // patch) ** 2 + 1
    shapes: Shapes = {
        f"{_VIT}cls_token": (1, 1, width),
        f"{_VIT}pos_embed": (1, positions, width),
        f"{_VIT}patch_embed.proj.weight": (width, 3, patch, patch),
        f"{_VIT}patch_embed.proj.bias": (width,),
        **_norm(f"{_VIT}norm", width),
    }
    for i in range(vision["num_hidden_layers"]):
        block = f"{_VIT}blocks.{i}"
        shapes.update(_norm(f"{block}.norm1", width))
        shapes.update(_linear(f"{block}.attn.qkv", width, 3 * width))
        shapes.update(_linear(f"{block}.attn.proj", width, width))
        shapes.update(_norm(f"{block}.norm2", width))
        shapes.update(_linear(f"{block}.mlp.fc1", width, inner))
        shapes.update(_linear(f"{block}.mlp.fc2", inner, width))
    # ImageReward's BERT (ImageReward/models/BLIP/med.py) names its weights as
    # transformers' BlipTextModel does.
    shapes.update({f"blip.text_encoder.{k}": v for k, v in _text_shapes(text).items()})
    widths = [text["hidden_size"], *layout["head"], 1]
    layers = zip(IMAGEREWARD_MLP_INDICES, widths[:-1], widths[1:], strict=True)
    for index, inputs, outputs in layers:
        shapes.update(_linear(f"mlp.layers.{index}", inputs, outputs))
    return shapes


def _require_imagereward_vocab(path: Path, rows: int) -> None:
    vocab = path / "vocab.txt"
    if not vocab.is_file():
        raise BaseInvalid(
            f"{path} has no vocab.txt: ImageReward reads prompts with bert-base-uncased's "
            f"tokenizer, which is not inside {IMAGEREWARD_WEIGHTS}; copy bert-base-uncased's "
            f"vocab.txt beside {IMAGEREWARD_WEIGHTS} and {MED_CONFIG}"
        )
    tokens = sum(1 for line in vocab.read_text(encoding="utf-8").splitlines() if line)
    if tokens > rows:
        raise BaseInvalid(
            f"{vocab} has {tokens} tokens but the text encoder's word embeddings have {rows} "
            "rows; use the vocabulary ImageReward was trained with (bert-base-uncased)"
        )
