"""On-disk cache of the frozen vision part's output, so a retrain only encodes new images.

The frozen part (patch embedding + the first round(f * L) ViT layers, see reward_model.py)
depends only on the image, the frozen weights, the freeze fraction and the input size, so
its output is stored under exactly that key:

    <root>/<frozen-weights sha256[:24]>-f<freeze fraction>-px<image size>/<sha[:2]>/<sha>.npy

The weights part of the key is a hash of the frozen tensors themselves (not of a path), so
two versions trained from the same base share entries and a different base never does.
Files are written atomically (temp file + rename): several workers may share one cache.
Entries are computed in full precision (autocast off, even inside a caller's bf16 autocast)
and stored on the CPU in the cache's one dtype, so a cache written by a GPU worker is read
by a CPU one (and the other way round) under the same key.

A `frozen_prefix` model also caches its text prefix, the output of the frozen text layers,
per (instruction, source, edit), under a key of everything frozen (vision and text weights,
vocabulary, text length):

    <root>/prefix-<frozen prefix sha256[:24]>-px<image size>/<key[:2]>/<key>.npy
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from rewards.dataset import ImageRef, JudgementRecord, load_image
from rewards.reward_model import BlipRewardModel

DEFAULT_MEMORY_BYTES = 512 * 2**20


class _CachedTensors:
    """key -> tensor, read from one key directory; keeps recently read entries in memory so
    a multi-epoch run reads each file once. Picklable (DataLoader workers get a copy)."""

    def __init__(self, directory: Path, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        self.directory = Path(directory)
        self.memory_bytes = memory_bytes
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._held = 0

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npy"

    def load(self, key: str, what: str) -> torch.Tensor:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        try:
            tensor = torch.from_numpy(np.load(self.path(key)))
        except FileNotFoundError:
            raise KeyError(f"nothing cached for {what}") from None
        self._remember(key, tensor)
        return tensor

    def _remember(self, key: str, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if size > self.memory_bytes:
            return
        self._memory[key] = tensor
        self._held += size
        while self._held > self.memory_bytes:
            _, dropped = self._memory.popitem(last=False)
            self._held -= dropped.numel() * dropped.element_size()

    def __getstate__(self) -> dict:
        # Workers start with an empty memory rather than a pickled copy of it.
        return {"directory": self.directory, "memory_bytes": self.memory_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["directory"], state["memory_bytes"])


class CachedFeatureSource(_CachedTensors):
    """ImageRef -> cached frozen features (T, H)."""

    def __call__(self, ref: ImageRef) -> torch.Tensor:
        return self.load(ref.sha256, f"image {ref.path} (sha256 {ref.sha256})")


def _batches(
    items: list, size: int, on_progress: Callable[[int, int], None] | None
) -> Iterator[list]:
    """`items` in chunks of `size`, reporting (done, total) after each."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
        if on_progress:
            on_progress(min(start + size, len(items)), len(items))


def _full_precision(model: BlipRewardModel) -> contextlib.AbstractContextManager:
    # A bf16 autocast around a caller (benchmarks, scoring on CUDA) must not leak bf16
    # rounding into entries that fp32 readers on other devices share.
    return torch.autocast(model.device.type, enabled=False)


def _not_cached(images: CachedFeatureSource, refs: list[ImageRef]) -> list[ImageRef]:
    # Images already on disk were counted as hits by the caller's own `ensure`.
    return [ref for ref in refs if not images.path(ref.sha256).is_file()]


def prefix_key(instruction: str, source: ImageRef, edited: ImageRef) -> str:
    return hashlib.sha256(f"{instruction}\0{source.sha256}\0{edited.sha256}".encode()).hexdigest()


class CachedPrefixSource(_CachedTensors):
    """(instruction, source, edited) -> cached text prefix (L, H), L its own token count."""

    def __call__(self, instruction: str, source: ImageRef, edited: ImageRef) -> torch.Tensor:
        key = prefix_key(instruction, source, edited)
        return self.load(key, f"the text prefix of edit {edited.path} of {source.path}")


class FeatureCache:
    """Frozen-feature cache rooted at `root`; counts hits and misses of `ensure`/`features`.

    dtype: how entries are stored: float32 (default, exact) or float16 (half the disk; the
    features then differ from a pixel forward by fp16 rounding).
    """

    def __init__(
        self,
        root: str | Path,
        dtype: torch.dtype = torch.float32,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
    ) -> None:
        if dtype not in (torch.float32, torch.float16):
            raise ValueError(f"cache dtype must be float32 or float16, not {dtype}")
        self.root = Path(root)
        self.dtype = dtype
        self.memory_bytes = memory_bytes
        self.hits = self.misses = 0  # images
        self.prefix_hits = self.prefix_misses = 0  # text prefixes

    def reset_counts(self) -> None:
        self.hits = self.misses = self.prefix_hits = self.prefix_misses = 0

    def directory_for(self, model: BlipRewardModel) -> Path:
        if not model.has_frozen_vision:
            raise ValueError("freeze_fraction is 0: nothing is frozen, so nothing can be cached")
        fraction = f"{model.config.freeze_fraction:.4f}".rstrip("0").rstrip(".")
        name = f"{model.frozen_fingerprint[:24]}-f{fraction}-px{model.image_size}"
        return self.root / name

    def source(self, model: BlipRewardModel) -> CachedFeatureSource:
        return CachedFeatureSource(self.directory_for(model), self.memory_bytes)

    def contains(self, model: BlipRewardModel, ref: ImageRef) -> bool:
        return self.source(model).path(ref.sha256).is_file()

    def ensure(
        self,
        model: BlipRewardModel,
        refs: Iterable[ImageRef],
        batch_size: int = 16,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Encode and store every image not cached yet; returns how many were encoded.

        Each distinct image counts once: a hit if it was on disk, a miss if encoded now.
        """
        directory = self.directory_for(model)
        self._write_key(directory, model)
        source = CachedFeatureSource(directory)
        unique = {ref.sha256: ref for ref in refs}
        missing = [ref for sha, ref in unique.items() if not source.path(sha).is_file()]
        self.hits += len(unique) - len(missing)
        self.misses += len(missing)
        for chunk in _batches(missing, batch_size, on_progress):
            pixels = model.preprocess([load_image(ref) for ref in chunk])
            with _full_precision(model):
                features = model.encode_frozen(pixels)
            features = features.to("cpu", self.dtype)
            for ref, tensor in zip(chunk, features, strict=True):
                self._write(source.path(ref.sha256), tensor)
        return len(missing)

    def features(self, model: BlipRewardModel, refs: list[ImageRef]) -> torch.Tensor:
        """Stacked features for `refs` (N, T, H), encoding whatever is missing first."""
        self.ensure(model, refs)
        source = self.source(model)
        return torch.stack([source(ref) for ref in refs])

    def prefix_directory_for(self, model: BlipRewardModel) -> Path:
        if not model.config.frozen_prefix:
            raise ValueError("only a frozen_prefix model has a text prefix to cache")
        return self.root / f"prefix-{model.prefix_fingerprint[:24]}-px{model.image_size}"

    def prefix_source(self, model: BlipRewardModel) -> CachedPrefixSource:
        return CachedPrefixSource(self.prefix_directory_for(model), self.memory_bytes)

    def ensure_prefixes(
        self,
        model: BlipRewardModel,
        records: Iterable[JudgementRecord],
        batch_size: int = 16,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Compute and store the text prefix of every (instruction, source, edit) the
        records hold that is not cached yet (images come from the image cache, encoded
        first if missing); returns how many were computed."""
        prefixes = self.prefix_source(model)
        wanted = {
            prefix_key(r.instruction, r.source, edited): (r.instruction, r.source, edited)
            for r in records
            for edited in r.variants.values()
        }
        missing = [item for key, item in wanted.items() if not prefixes.path(key).is_file()]
        self.prefix_hits += len(wanted) - len(missing)
        self.prefix_misses += len(missing)
        if not missing:
            return 0
        images = self.source(model)
        self.ensure(model, _not_cached(images, [r for _, s, e in missing for r in (s, e)]))
        for chunk in _batches(missing, batch_size, on_progress):
            input_ids, mask = model.tokenize([instruction for instruction, _, _ in chunk])
            with _full_precision(model):
                prefix = model.text_prefix(
                    input_ids,
                    mask,
                    torch.stack([images(edited) for _, _, edited in chunk]),
                    torch.stack([images(source) for _, source, _ in chunk]),
                    from_features=True,
                )
            prefix = prefix.to("cpu", self.dtype)
            for item, tensor, length in zip(chunk, prefix, mask.sum(1).tolist(), strict=True):
                self._write(prefixes.path(prefix_key(*item)), tensor[:length])
        return len(missing)

    def _write(self, path: Path, tensor: torch.Tensor) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                np.save(file, tensor.contiguous().numpy())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _write_key(self, directory: Path, model: BlipRewardModel) -> None:
        # For people browsing the cache: what the directory name stands for.
        key_file = directory / "key.json"
        if key_file.is_file():
            return
        directory.mkdir(parents=True, exist_ok=True)
        key = {
            "frozen_weights_sha256": model.frozen_fingerprint,
            "freeze_fraction": model.config.freeze_fraction,
            "image_size": model.image_size,
            "frozen_vision_layers": model.n_frozen_vision_layers,
            "base": model.config.base,
            "dtype": str(self.dtype),
        }
        key_file.write_text(json.dumps(key, indent=2))


def shared_cache() -> FeatureCache:
    """The worker's one cache, under REWARD_MODEL_ROOT: every run and scoring pass of every
    project reads the frozen features of an image encoded once (keyed by content hash)."""
    from django.conf import settings  # the only Django this module needs, read when called

    return FeatureCache(settings.REWARD_MODEL_ROOT / "feature-cache")
