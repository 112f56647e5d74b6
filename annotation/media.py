"""Image bytes for logged-in members of a project that uses the image."""

from __future__ import annotations

import io

from django.contrib.auth.models import AnonymousUser, User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET
from PIL import Image as PILImage
from rest_framework.exceptions import AuthenticationFailed

from annotation.authentication import CachedTokenAuthentication
from annotation.models import EditTask, Image, Membership, Variant

THUMBNAIL_SIDE = 256
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}


def _user_from_token(request: HttpRequest) -> User | None:
    try:
        found = CachedTokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        return None
    return found[0] if found else None


def _requesting_user(request: HttpRequest) -> User | AnonymousUser:
    if request.user.is_authenticated:
        return request.user
    return _user_from_token(request) or request.user


def user_may_see(user: User, image: Image) -> bool:
    if user.is_staff:
        return True
    member_projects = Membership.objects.filter(user=user).values("project_id")
    return (
        EditTask.objects.filter(source=image, project_id__in=member_projects).exists()
        or Variant.objects.filter(image=image, task__project_id__in=member_projects).exists()
    )


def _image_for(request: HttpRequest, sha256: str) -> Image | HttpResponse:
    user = _requesting_user(request)
    if not user.is_authenticated:
        return redirect(f"/accounts/login/?next={request.path}")
    image = Image.objects.filter(sha256=sha256).first()
    if image is None or not user_may_see(user, image):
        raise Http404("no such image")
    return image


def _cached(response: HttpResponse) -> HttpResponse:
    # Content-addressed: the bytes behind a URL never change.
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


@require_GET
def original(request: HttpRequest, sha256: str) -> HttpResponse:
    """The stored bytes, untouched: annotators judge quality at full fidelity."""
    image = _image_for(request, sha256)
    if isinstance(image, HttpResponse):
        return image
    content_type = CONTENT_TYPES.get(image.format, "application/octet-stream")
    return _cached(FileResponse(image.file.open("rb"), content_type=content_type))


@require_GET
def thumbnail(request: HttpRequest, sha256: str) -> HttpResponse:
    image = _image_for(request, sha256)
    if isinstance(image, HttpResponse):
        return image
    name = f"thumbs/{sha256[:2]}/{sha256}.jpg"
    if not default_storage.exists(name):
        default_storage.save(name, ContentFile(_make_thumbnail(image)))
    return _cached(FileResponse(default_storage.open(name, "rb"), content_type="image/jpeg"))


def _make_thumbnail(image: Image) -> bytes:
    with image.file.open("rb") as handle, PILImage.open(handle) as picture:
        picture = picture.convert("RGB")
        picture.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
