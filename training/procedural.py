"""Offline procedural image editor: PIL operations standing in for a diffusion editor.

Each instruction maps to an `EditRecipe`. `make_variants` renders four edits of one
photo for that recipe (right op at a good strength, too weak, overdone, and a wrong
op or a damaged edit) and records a ground-truth score for each, derived only from
how the edit was made, so a simulated annotator can rank them without a model.
`build_demo_manifest` writes a demo import (`manifest.jsonl` + PNGs) from the
real photos that ship inside scikit-image, scikit-learn and matplotlib.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

CATEGORIES = ("local", "remove", "add", "texture", "background", "global", "style", "other")
ASPECTS = ("following", "preserving", "quality")
MAX_SIDE = 512
VARIANT_KINDS = ("good", "weak", "overdone", "flawed")

# Strength 1.0 is the amount the instruction asks for; the ranges below are what
# the "good", "weak" and "overdone" variants draw from.
GOOD_STRENGTH = (0.9, 1.1)
WEAK_STRENGTH = (0.25, 0.35)
OVERDONE_STRENGTH = (2.6, 3.2)
SUBJECT_SCALE = 0.6  # subject ellipse, as a fraction of the frame, for masked edits

ApplyFn = Callable[[Image.Image, float], Image.Image]
Truth = dict[str, float]
T = TypeVar("T")


# --- demo photos ------------------------------------------------------------------


@dataclass(frozen=True)
class DemoPhoto:
    name: str
    loader: str  # "<package>:<name>": a photo that ships inside an installed wheel
    subject: str | None  # what masked/subject instructions refer to; None = no clear subject


# Colour photos that load offline from the wheels EditLoop installs anyway (scikit-image,
# scikit-learn, matplotlib). skimage.data.cat is the same array as chelsea, grayscale ones
# would make "black and white" a no-op, and the more photos there are, the more a reward
# model trained on some of them must judge edits of a photo it never saw.
DEMO_PHOTOS = (
    DemoPhoto("astronaut", "skimage:astronaut", "astronaut"),
    DemoPhoto("coffee", "skimage:coffee", "coffee cup"),
    DemoPhoto("cat", "skimage:chelsea", "cat"),
    DemoPhoto("rocket", "skimage:rocket", "rocket"),
    DemoPhoto("cells", "skimage:immunohistochemistry", None),
    DemoPhoto("hubble", "skimage:hubble_deep_field", None),
    DemoPhoto("retina", "skimage:retina", None),
    DemoPhoto("motorcycle", "skimage:stereo_motorcycle", "motorcycle"),
    DemoPhoto("temple", "sklearn:china.jpg", "temple"),
    DemoPhoto("flower", "sklearn:flower.jpg", "flower"),
    DemoPhoto("portrait", "matplotlib:grace_hopper.jpg", "woman"),
)


def _photo_array(loader: str) -> np.ndarray:
    package, name = loader.split(":")
    if package == "skimage":
        import skimage.data

        array = getattr(skimage.data, name)()
        return array[0] if isinstance(array, tuple) else array  # a stereo pair: the left view
    if package == "sklearn":
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)
    if package == "matplotlib":
        from matplotlib import cbook

        return np.asarray(Image.open(cbook.get_sample_data(name)).convert("RGB"))
    raise ValueError(f"unknown photo package {package!r} in {loader!r}")


@cache
def _load_photo_cached(loader: str) -> Image.Image:
    return downscale(Image.fromarray(_photo_array(loader)).convert("RGB"))


def load_photo(photo: DemoPhoto) -> Image.Image:
    """The photo as RGB with its longest side at most MAX_SIDE (a fresh copy)."""
    return _load_photo_cached(photo.loader).copy()


def downscale(image: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    scale = max_side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


# --- helpers ----------------------------------------------------------------------


def _blend(base: Image.Image, edited: Image.Image, amount: float) -> Image.Image:
    return Image.blend(base, edited, min(max(amount, 0.0), 1.0))


def _gray_rgb(image: Image.Image) -> Image.Image:
    return ImageOps.grayscale(image).convert("RGB")


def _from_float(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), "RGB")


def _channel_gains(image: Image.Image, red: float, green: float, blue: float) -> Image.Image:
    array = np.asarray(image, dtype=np.float32) * np.array([red, green, blue], np.float32)
    return _from_float(array)


def _radial_distance(size: tuple[int, int]) -> np.ndarray:
    """Distance from the centre, 0 there and 1 at the corners, shape (h, w)."""
    width, height = size
    ys = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    return np.sqrt((xs**2 + ys**2) / 2.0)


def _subject_scale(strength: float) -> float:
    # Overdoing a masked edit spills it onto the subject: the protected ellipse shrinks.
    return SUBJECT_SCALE / max(1.0, strength)


def _centre_mask(size: tuple[int, int], scale: float) -> Image.Image:
    """Soft ellipse, 255 inside the subject region and 0 outside."""
    width, height = size
    rx, ry = width * scale / 2, height * scale / 2
    mask = Image.new("L", size, 0)
    box = (width / 2 - rx, height / 2 - ry, width / 2 + rx, height / 2 + ry)
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    return mask.filter(ImageFilter.GaussianBlur(min(size) / 15))


def _outside_subject(image: Image.Image, edited: Image.Image, strength: float) -> Image.Image:
    """Apply `edited` to everything but the subject."""
    return Image.composite(image, edited, _centre_mask(image.size, _subject_scale(strength)))


def _inside_subject(image: Image.Image, edited: Image.Image, strength: float) -> Image.Image:
    """Apply `edited` to the subject only (spilling outward when overdone)."""
    scale = SUBJECT_SCALE * max(1.0, strength) ** 0.5
    return Image.composite(edited, image, _centre_mask(image.size, scale))


# --- operations: (image, strength) -> image, strength 1.0 = the amount asked for ----


def brighten(image: Image.Image, strength: float) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(1 + 0.35 * strength)


def darken(image: Image.Image, strength: float) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(max(0.08, 1 - 0.3 * strength))


def contrast(image: Image.Image, strength: float) -> Image.Image:
    return ImageEnhance.Contrast(image).enhance(1 + 0.5 * strength)


def saturate(image: Image.Image, strength: float) -> Image.Image:
    return ImageEnhance.Color(image).enhance(1 + 0.7 * strength)


def warm(image: Image.Image, strength: float) -> Image.Image:
    return _channel_gains(image, 1 + 0.12 * strength, 1 + 0.03 * strength, 1 - 0.12 * strength)


def cool(image: Image.Image, strength: float) -> Image.Image:
    return _channel_gains(image, 1 - 0.12 * strength, 1 + 0.01 * strength, 1 + 0.12 * strength)


def grayscale(image: Image.Image, strength: float) -> Image.Image:
    out = _blend(image, _gray_rgb(image), strength)
    if strength > 1:  # crushed, high-contrast monochrome
        out = ImageEnhance.Contrast(out).enhance(1 + 0.8 * (strength - 1))
    return out


def sepia(image: Image.Image, strength: float) -> Image.Image:
    toned = ImageOps.colorize(ImageOps.grayscale(image), black="#2b1a0c", white="#fff2d6")
    out = _blend(image, toned.convert("RGB"), strength)
    if strength > 1:  # garish orange cast
        out = ImageEnhance.Color(out).enhance(1 + 1.2 * (strength - 1))
    return out


def pencil_sketch(image: Image.Image, strength: float) -> Image.Image:
    gray = ImageOps.grayscale(image).filter(ImageFilter.SMOOTH_MORE)
    lines = gray.filter(ImageFilter.CONTOUR).convert("RGB")
    out = _blend(image, lines, strength)
    if strength > 1:  # lines blown out to hard black and white
        out = ImageEnhance.Contrast(out).enhance(1 + 1.5 * (strength - 1))
    return out


def emboss(image: Image.Image, strength: float) -> Image.Image:
    return _blend(image, _gray_rgb(image).filter(ImageFilter.EMBOSS), strength)


def posterize(image: Image.Image, strength: float) -> Image.Image:
    bits = min(7, max(1, round(8 - 5 * strength)))
    return ImageOps.posterize(image, bits)


def sharpen(image: Image.Image, strength: float) -> Image.Image:
    return image.filter(ImageFilter.UnsharpMask(radius=2, percent=round(130 * strength)))


def film_grain(image: Image.Image, strength: float) -> Image.Image:
    # The noise pattern is a function of the strength so a variant's params reproduce it.
    rng = np.random.default_rng(round(strength * 1_000_000))
    noise = rng.normal(0.0, 12.0 * strength, size=(image.height, image.width, 1))
    return _from_float(np.asarray(image, dtype=np.float32) + noise)


def denoise(image: Image.Image, strength: float) -> Image.Image:
    if strength <= 1:
        return _blend(image, image.filter(ImageFilter.MedianFilter(3)), strength)
    size = 2 * round(strength) + 3  # big medians smear the photo into a painting
    return image.filter(ImageFilter.MedianFilter(size))


def blur_all(image: Image.Image, strength: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(2.5 * strength))


def blur_background(image: Image.Image, strength: float) -> Image.Image:
    blurred = image.filter(ImageFilter.GaussianBlur(4 * strength))
    return _outside_subject(image, blurred, strength)


def darken_background(image: Image.Image, strength: float) -> Image.Image:
    return _outside_subject(image, darken(image, 1.6 * strength), strength)


def whiten_background(image: Image.Image, strength: float) -> Image.Image:
    white = Image.new("RGB", image.size, (255, 255, 255))
    return _outside_subject(image, _blend(image, white, strength), strength)


def colour_splash(image: Image.Image, strength: float) -> Image.Image:
    return _outside_subject(image, grayscale(image, strength), strength)


def brighten_subject(image: Image.Image, strength: float) -> Image.Image:
    return _inside_subject(image, brighten(image, strength), strength)


def vignette(image: Image.Image, strength: float) -> Image.Image:
    falloff = np.clip(1 - 0.6 * strength * _radial_distance(image.size) ** 2, 0, 1)
    return _from_float(np.asarray(image, dtype=np.float32) * falloff[..., None])


def frame(image: Image.Image, strength: float) -> Image.Image:
    width = max(1, round(min(image.size) * 0.02 * strength))
    out = image.copy()
    ImageDraw.Draw(out).rectangle((0, 0, image.width - 1, image.height - 1), outline=0, width=width)
    return out


def zoom(image: Image.Image, strength: float) -> Image.Image:
    keep = 1 / (1 + 0.35 * strength)
    width, height = round(image.width * keep), round(image.height * keep)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    crop = image.crop((left, top, left + width, top + height))
    return crop.resize(image.size, Image.Resampling.BICUBIC)


def mirror(image: Image.Image, strength: float) -> Image.Image:
    return ImageOps.mirror(image)


def invert(image: Image.Image, strength: float) -> Image.Image:
    return _blend(image, ImageOps.invert(image), strength)


@dataclass(frozen=True)
class Operation:
    """A PIL edit plus how much an honest judge would dock it.

    intrusion: preserving points lost per unit of strength (changes beyond the request);
    artefacts: quality points lost per unit of strength beyond 1.0.
    """

    apply: ApplyFn
    intrusion: float
    artefacts: float

    @property
    def name(self) -> str:
        return self.apply.__name__

    def __call__(self, image: Image.Image, strength: float) -> Image.Image:
        return self.apply(image, strength)


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation(brighten, 0.6, 1.3),
        Operation(darken, 0.6, 1.2),
        Operation(contrast, 0.6, 1.3),
        Operation(saturate, 0.5, 1.1),
        Operation(warm, 0.4, 0.9),
        Operation(cool, 0.4, 0.9),
        Operation(grayscale, 0.8, 0.9),
        Operation(sepia, 0.9, 0.9),
        Operation(pencil_sketch, 1.6, 1.0),
        Operation(emboss, 1.8, 1.0),
        Operation(posterize, 1.2, 1.3),
        Operation(sharpen, 0.4, 1.5),
        Operation(film_grain, 0.6, 1.4),
        Operation(denoise, 0.6, 1.3),
        Operation(blur_all, 1.6, 1.6),
        Operation(blur_background, 0.7, 1.0),
        Operation(darken_background, 0.8, 1.0),
        Operation(whiten_background, 1.0, 0.9),
        Operation(colour_splash, 0.8, 0.9),
        Operation(brighten_subject, 0.6, 1.1),
        Operation(vignette, 0.5, 0.9),
        Operation(frame, 0.4, 0.7),
        Operation(zoom, 1.0, 1.4),
        Operation(mirror, 1.5, 0.0),
        Operation(invert, 2.2, 0.5),
    )
}


# --- damage: unwanted side effects layered on an otherwise right edit --------------


def jpeg_artefacts(image: Image.Image, amount: float) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=round(amount))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def heavy_blur(image: Image.Image, amount: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(amount))


def off_centre_crop(image: Image.Image, amount: float) -> Image.Image:
    """Cut `amount` of the width off the left and stretch the rest back."""
    left = round(image.width * amount)
    return image.crop((left, 0, image.width, image.height)).resize(image.size)


@dataclass(frozen=True)
class Damage:
    apply: ApplyFn
    amount_range: tuple[float, float]
    following: float  # points lost on each aspect
    preserving: float
    quality: float

    @property
    def name(self) -> str:
        return self.apply.__name__


DAMAGES = (
    Damage(jpeg_artefacts, (4, 10), following=0.2, preserving=0.6, quality=2.6),
    Damage(heavy_blur, (2.5, 4.0), following=0.3, preserving=1.0, quality=2.8),
    Damage(off_centre_crop, (0.25, 0.35), following=0.6, preserving=2.4, quality=0.8),
)


# --- recipes ------------------------------------------------------------------------


@dataclass(frozen=True)
class EditRecipe:
    instruction: str  # may contain "{subject}"
    category: str
    operation: Operation
    wrong_operations: tuple[Operation, ...]

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"category {self.category!r} is not one of {CATEGORIES}")
        if not self.wrong_operations:
            raise ValueError(f"recipe {self.instruction!r} needs at least one wrong operation")

    @property
    def needs_subject(self) -> bool:
        return "{subject}" in self.instruction

    def instruction_for(self, photo: DemoPhoto) -> str:
        return self.instruction.format(subject=photo.subject)

    def fits(self, photo: DemoPhoto) -> bool:
        return photo.subject is not None or not self.needs_subject


def _recipe(instruction: str, category: str, op: str, *wrong: str) -> EditRecipe:
    return EditRecipe(instruction, category, OPERATIONS[op], tuple(OPERATIONS[w] for w in wrong))


RECIPES = (
    _recipe("make it brighter", "global", "brighten", "darken", "contrast"),
    _recipe("make the photo darker and moodier", "global", "darken", "brighten", "vignette"),
    _recipe("increase the contrast", "global", "contrast", "saturate", "brighten"),
    _recipe("make the colours warmer", "global", "warm", "cool", "saturate"),
    _recipe("give the photo a cool blue tone", "global", "cool", "warm", "grayscale"),
    _recipe("make the colours more vivid", "global", "saturate", "contrast", "grayscale"),
    _recipe("turn the photo black and white", "style", "grayscale", "sepia", "invert"),
    _recipe("give it an old sepia look", "style", "sepia", "warm", "grayscale"),
    _recipe("make it look like a pencil sketch", "style", "pencil_sketch", "emboss", "grayscale"),
    _recipe("posterize it into a few flat colours", "style", "posterize", "saturate", "emboss"),
    _recipe(
        "blur the background behind the {subject}",
        "background",
        "blur_background",
        "blur_all",
        "darken_background",
    ),
    _recipe(
        "darken the background around the {subject}",
        "background",
        "darken_background",
        "darken",
        "blur_background",
    ),
    _recipe("zoom in on the {subject}", "other", "zoom", "mirror", "frame"),
    _recipe("crop to the centre", "other", "zoom", "mirror", "vignette"),
    _recipe("add a vignette", "add", "vignette", "darken", "frame"),
    _recipe("add a thin black frame around the photo", "add", "frame", "vignette", "zoom"),
    _recipe("sharpen the details", "texture", "sharpen", "contrast", "film_grain"),
    _recipe("add a film grain texture", "texture", "film_grain", "sharpen", "blur_all"),
    _recipe(
        "remove the colour from everything except the {subject}",
        "local",
        "colour_splash",
        "grayscale",
        "darken_background",
    ),
    _recipe(
        "brighten the {subject} and nothing else",
        "local",
        "brighten_subject",
        "brighten",
        "darken_background",
    ),
    _recipe("remove the noise and grain", "remove", "denoise", "blur_all", "sharpen"),
    _recipe(
        "remove the background behind the {subject}",
        "remove",
        "whiten_background",
        "blur_background",
        "colour_splash",
    ),
)


# --- variants and their ground truth -------------------------------------------------


@dataclass
class ProceduralVariant:
    image: Image.Image
    params: dict[str, object]
    truth: Truth = field(default_factory=dict)

    @property
    def overall(self) -> float:
        return sum(self.truth[aspect] for aspect in ASPECTS) / len(ASPECTS)

    @property
    def kind(self) -> str:
        return str(self.params["kind"])


def _clamp_score(value: float) -> float:
    return round(min(5.0, max(0.0, value)), 3)


def _truth(following: float, preserving: float, quality: float) -> Truth:
    scores = (following, preserving, quality)
    return {aspect: _clamp_score(v) for aspect, v in zip(ASPECTS, scores, strict=True)}


def _following(strength: float) -> float:
    # Under-doing reads as "nothing happened" and costs more than overdoing.
    log_strength = math.log(strength)
    return 5 - 2.5 * max(0.0, -log_strength) - 1.5 * max(0.0, log_strength)


def correct_truth(op: Operation, strength: float) -> Truth:
    """Truth for the requested op: a small cost for any edit, a big one past strength 1."""
    overshoot = max(0.0, strength - 1)
    preserving = 5 - op.intrusion * (0.2 * strength + 0.8 * overshoot)
    quality = 5 - op.artefacts * overshoot
    return _truth(_following(strength), preserving, quality)


def wrong_truth(op: Operation, strength: float) -> Truth:
    """A clean edit of the wrong kind: the instruction is ignored and unrequested things change."""
    return _truth(1.0, 4.2 - 0.6 * op.intrusion * strength, 4.5)


def damaged_truth(op: Operation, strength: float, damage: Damage) -> Truth:
    base = correct_truth(op, strength)
    losses = (damage.following, damage.preserving, damage.quality)
    return _truth(*(base[aspect] - loss for aspect, loss in zip(ASPECTS, losses, strict=True)))


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return round(float(rng.uniform(*bounds)), 3)


def _strength_variant(
    image: Image.Image, op: Operation, kind: str, seed: int, bounds: tuple[float, float]
) -> ProceduralVariant:
    strength = _uniform(np.random.default_rng(seed), bounds)
    params: dict[str, object] = {
        "operation": op.name,
        "strength": strength,
        "seed": seed,
        "correct": True,
        "kind": kind,
    }
    return ProceduralVariant(op(image, strength), params, correct_truth(op, strength))


def _wrong_variant(image: Image.Image, recipe: EditRecipe, seed: int) -> ProceduralVariant:
    rng = np.random.default_rng(seed)
    op = recipe.wrong_operations[int(rng.integers(len(recipe.wrong_operations)))]
    strength = _uniform(rng, GOOD_STRENGTH)
    params: dict[str, object] = {
        "operation": op.name,
        "strength": strength,
        "seed": seed,
        "correct": False,
        "kind": "flawed",
        "flaw": "wrong_operation",
    }
    return ProceduralVariant(op(image, strength), params, wrong_truth(op, strength))


def _damaged_variant(image: Image.Image, recipe: EditRecipe, seed: int) -> ProceduralVariant:
    rng = np.random.default_rng(seed)
    op, damage = recipe.operation, DAMAGES[int(rng.integers(len(DAMAGES)))]
    strength = _uniform(rng, GOOD_STRENGTH)
    amount = _uniform(rng, damage.amount_range)
    params: dict[str, object] = {
        "operation": op.name,
        "strength": strength,
        "seed": seed,
        "correct": False,
        "kind": "flawed",
        "flaw": damage.name,
        "damage_amount": amount,
    }
    edited = damage.apply(op(image, strength), amount)
    return ProceduralVariant(edited, params, damaged_truth(op, strength, damage))


def _flawed_variant(image: Image.Image, recipe: EditRecipe, seed: int) -> ProceduralVariant:
    # Half wrong operation, half right operation with collateral damage.
    if np.random.default_rng(seed).random() < 0.5:
        return _wrong_variant(image, recipe, seed)
    return _damaged_variant(image, recipe, seed)


def make_variants(
    image: Image.Image, recipe: EditRecipe, rng: np.random.Generator
) -> list[ProceduralVariant]:
    """Four edits in a fixed order of kinds: good, weak, overdone, flawed."""
    image = image.convert("RGB")
    good, weak, overdone, flawed = (int(s) for s in rng.integers(0, 2**31 - 1, size=4))
    op = recipe.operation
    return [
        _strength_variant(image, op, "good", good, GOOD_STRENGTH),
        _strength_variant(image, op, "weak", weak, WEAK_STRENGTH),
        _strength_variant(image, op, "overdone", overdone, OVERDONE_STRENGTH),
        _flawed_variant(image, recipe, flawed),
    ]


# --- demo manifest ---------------------------------------------------------------------


TaskPair = tuple[DemoPhoto, EditRecipe]


def task_pair_count() -> int:
    """How many distinct photo/recipe pairs the demo photos and recipes make."""
    return sum(recipe.fits(photo) for recipe in RECIPES for photo in DEMO_PHOTOS)


def pick_tasks(n_tasks: int, rng: np.random.Generator) -> list[TaskPair]:
    """Distinct (photo, recipe) pairs, dealt round-robin over categories so all appear."""
    queues = [queue for category in CATEGORIES if (queue := _category_queue(category, rng))]
    available = sum(len(queue) for queue in queues)
    if n_tasks > available:
        raise ValueError(f"n_tasks={n_tasks} but only {available} distinct photo/recipe pairs")
    picked: list[TaskPair] = []
    while len(picked) < n_tasks:
        for queue in queues:
            if queue and len(picked) < n_tasks:
                picked.append(queue.pop(0))
    return picked


def _category_queue(category: str, rng: np.random.Generator) -> list[TaskPair]:
    """One category's pairs, cycling through its recipes before any recipe repeats."""
    recipes = _shuffled([recipe for recipe in RECIPES if recipe.category == category], rng)
    per_recipe = [
        _shuffled([(photo, recipe) for photo in DEMO_PHOTOS if recipe.fits(photo)], rng)
        for recipe in recipes
    ]
    rounds = itertools.zip_longest(*per_recipe)
    return [pair for round_ in rounds for pair in round_ if pair is not None]


def _shuffled(items: list[T], rng: np.random.Generator) -> list[T]:
    return [items[i] for i in rng.permutation(len(items))]


def _save_png(image: Image.Image, path: Path) -> None:
    # Level 1 is ~3x faster than the default 6 and these photos barely compress further.
    image.save(path, format="PNG", compress_level=1)


def _variant_entry(variant: ProceduralVariant, image_path: str) -> dict[str, object]:
    return {
        "image": image_path,
        "generator": "procedural",
        "seed": variant.params["seed"],
        "params": {**variant.params, "truth": variant.truth},
    }


def _write_task(
    out_dir: Path, external_id: str, photo: DemoPhoto, recipe: EditRecipe, rng: np.random.Generator
) -> dict[str, object]:
    variants = make_variants(load_photo(photo), recipe, rng)
    # Shuffle so the file letter says nothing about which variant is the good one.
    order = rng.permutation(len(variants))
    entries = []
    for letter, index in zip("abcd", order, strict=True):
        relative = f"img/{external_id}_{letter}.png"
        _save_png(variants[index].image, out_dir / relative)
        entries.append(_variant_entry(variants[index], relative))
    return {
        "source": f"img/{photo.name}.png",
        "instruction": recipe.instruction_for(photo),
        "category": recipe.category,
        "external_id": external_id,
        "variants": entries,
    }


def build_demo_manifest(out_dir: Path, n_tasks: int = 24, seed: int = 0) -> Path:
    """Write `out_dir/manifest.jsonl` and its PNGs under `out_dir/img/`; return the manifest."""
    out_dir = Path(out_dir)
    (out_dir / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tasks = pick_tasks(n_tasks, rng)
    for photo in {photo for photo, _ in tasks}:
        _save_png(load_photo(photo), out_dir / "img" / f"{photo.name}.png")
    lines = [
        json.dumps(_write_task(out_dir, f"demo-{number:03d}", photo, recipe, rng))
        for number, (photo, recipe) in enumerate(tasks, start=1)
    ]
    manifest = out_dir / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest
