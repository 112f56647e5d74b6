"""Content-addressed image storage: every image EditLoop keeps (imported, generated,
made by an evaluation) is one file under ``images/<sha[:2]>/<sha>.<format>`` and one
``Image`` row keyed by its sha256, so the same picture twice is stored once. The importer,
generation rounds and fine-tune evaluations all store through here.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from annotation.models import Image

ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"}


@dataclass(frozen=True)
class CheckedImage:
    sha256: str
    width: int
    height: int
    format: str
    size_bytes: int


def inspect_image(data: bytes) -> CheckedImage:
    """Open the bytes with Pillow, refusing non-images, corrupt files and decompression bombs."""
    max_pixels = settings.IMAGE_MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as image:
                width, height, image_format = image.width, image.height, image.format
                if width * height > max_pixels:
                    raise ValueError(
                        f"{width}x{height} is {width * height} pixels, over the "
                        f"{max_pixels} pixel limit"
                    )
                if image_format not in ALLOWED_FORMATS:
                    raise ValueError(f"format {image_format} is not accepted")
                image.verify()
            with PILImage.open(io.BytesIO(data)) as image:
                image.load()  # verify() misses truncated pixel data; decoding finds it
    except ValueError:
        raise
    except (PILImage.UnidentifiedImageError, PILImage.DecompressionBombError):
        raise ValueError("not an image Pillow can read") from None
    except (OSError, SyntaxError, PILImage.DecompressionBombWarning) as error:
        raise ValueError(f"corrupt image ({error})") from None
    return CheckedImage(
        sha256=hashlib.sha256(data).hexdigest(),
        width=width,
        height=height,
        format=image_format,
        size_bytes=len(data),
    )


def store_images(
    checked: dict[str, CheckedImage], read: Callable[[str], bytes], written: list[str]
) -> dict[str, Image]:
    """Image rows by manifest path; a new file is written once, under its hash."""
    first_path_by_sha = {image.sha256: path for path, image in checked.items()}
    known = set(Image.objects.filter(sha256__in=first_path_by_sha).values_list("sha256", flat=True))
    new_rows = []
    for sha, path in first_path_by_sha.items():
        if sha in known:
            continue
        image = checked[path]
        name = f"images/{sha[:2]}/{sha}.{image.format.lower()}"
        if not default_storage.exists(name):
            default_storage.save(name, ContentFile(read(path)))
            written.append(name)
        new_rows.append(
            Image(
                sha256=sha,
                file=name,
                width=image.width,
                height=image.height,
                format=image.format,
                size_bytes=image.size_bytes,
            )
        )
    # ignore_conflicts: a concurrent import may store the same photo first; then its row wins.
    Image.objects.bulk_create(new_rows, ignore_conflicts=True)
    by_sha = {image.sha256: image for image in Image.objects.filter(sha256__in=first_path_by_sha)}
    return {path: by_sha[image.sha256] for path, image in checked.items()}


def store_pil_image(image: PILImage.Image) -> Image:
    """A generated image as a content-addressed PNG row (the same layout as imports); the
    same pixels twice give the same row."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    data = buffer.getvalue()
    checked = inspect_image(data)
    name = f"images/{checked.sha256[:2]}/{checked.sha256}.png"
    if not default_storage.exists(name):
        default_storage.save(name, ContentFile(data))
    row, _ = Image.objects.get_or_create(
        sha256=checked.sha256,
        defaults={
            "file": name,
            "width": checked.width,
            "height": checked.height,
            "format": checked.format,
            "size_bytes": checked.size_bytes,
        },
    )
    return row
