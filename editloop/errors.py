"""The one "your request is wrong" error: :class:`RequestInvalid`, carrying field → messages.

The plain functions that check a request (export parsing, judgements, imports, the
retrain, fine-tune and generation requests) raise it; this module imports nothing of Django
or DRF at import time, so plain-Python modules may raise it too. Two places turn it into
what a person sees: the API's exception handler (:func:`api_exception_handler`, settings
``REST_FRAMEWORK["EXCEPTION_HANDLER"]``) answers 400 with :attr:`RequestInvalid.body`, and
admin forms call :meth:`RequestInvalid.add_to_form`. Anything else a view raises (a
ValueError from a bug included) goes to DRF's default handler: a bug is a 500, not a 400.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, Self

if TYPE_CHECKING:
    from rest_framework.response import Response

# A field's messages; an object field nests: {"filters": {"min_agreement": ["..."]}}.
Messages = list[str] | dict[str, "Messages"]
NON_FIELD = "non_field_errors"  # DRF's key for the request as a whole


class RequestInvalid(ValueError):
    """A request that names wrong fields: ``errors`` is field → messages, the shape DRF's
    serializers answer with (``non_field_errors`` for the request as a whole).

    A ValueError, so that callers written against the ValueErrors raised before this type
    (``manage.py train_reward``) still catch it; the API's handler catches this type only."""

    def __init__(self, errors: Mapping[str, Messages]) -> None:
        self.errors: dict[str, Messages] = dict(errors)
        super().__init__(self.errors)

    @classmethod
    def of(cls, field: str, *messages: str) -> Self:
        """One field's refusal: ``RequestInvalid.of("base", "is not a BLIP checkpoint")``."""
        return cls({field: list(messages)})

    @classmethod
    def merge(cls, refusals: Iterable[RequestInvalid]) -> RequestInvalid:
        """One refusal naming every field of several (a field named twice keeps all its
        messages, in order)."""
        errors: dict[str, Messages] = {}
        for refusal in refusals:
            _merge_into(errors, refusal.errors)
        return cls(errors)

    @property
    def body(self) -> dict[str, Any]:
        """What the API answers with the 400."""
        return self.errors

    def messages(self) -> Iterator[tuple[str, str]]:
        """(field, message) pairs, a nested field's name dotted: ``filters.min_agreement``."""
        yield from _flatten(self.errors)

    def add_to_form(self, form: Form) -> None:
        """Each message on the form's field of that name (a nested one prefixed with its
        inner name); a name the form has no field for goes above the form, prefixed with
        the name so that it still says which."""
        for name, messages in self.errors.items():
            target = name if name in form.fields else None
            for dotted, message in _flatten({name: messages}):
                shown = dotted if target is None else dotted.removeprefix(name).lstrip(".")
                named = shown and shown != NON_FIELD
                form.add_error(target, f"{shown}: {message}" if named else message)

    def __str__(self) -> str:
        return "; ".join(
            message if name == NON_FIELD else f"{name}: {message}"
            for name, message in self.messages()
        )


class FieldErrors:
    """Gathers the problems of several fields so that a request is refused once, naming all
    of them: ``add`` a message, or run a check that may raise RequestInvalid under
    ``gather()``; ``raise_if_any`` at the end."""

    def __init__(self) -> None:
        self.refusals: list[RequestInvalid] = []

    def add(self, field: str, message: str) -> None:
        self.refusals.append(RequestInvalid.of(field, message))

    @contextmanager
    def gather(self) -> Iterator[None]:
        try:
            yield
        except RequestInvalid as refusal:
            self.refusals.append(refusal)

    def __bool__(self) -> bool:
        return bool(self.refusals)

    def raise_if_any(self) -> None:
        """A lone refusal as it was raised (a subclass stays itself), several merged."""
        if len(self.refusals) == 1:
            raise self.refusals[0]
        if self.refusals:
            raise RequestInvalid.merge(self.refusals)


class Form(Protocol):
    """What add_to_form needs of a Django form (duck-typed: no Django import here)."""

    fields: Mapping[str, object]

    def add_error(self, field: str | None, error: str) -> None: ...


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's EXCEPTION_HANDLER: RequestInvalid → 400 with its body (and the request's
    transaction rolled back, as DRF does for its own ValidationError); anything else as DRF
    would answer it, which leaves an unexpected exception to become a 500."""
    from rest_framework import status
    from rest_framework.response import Response
    from rest_framework.views import exception_handler, set_rollback

    if isinstance(exc, RequestInvalid):
        set_rollback()
        return Response(exc.body, status=status.HTTP_400_BAD_REQUEST)
    return exception_handler(exc, context)


def _merge_into(errors: dict[str, Messages], more: Mapping[str, Messages]) -> None:
    for name, messages in more.items():
        kept = errors.get(name)
        if kept is None:
            errors[name] = _copy(messages)
        elif isinstance(kept, dict) and isinstance(messages, dict):
            _merge_into(kept, messages)
        elif isinstance(kept, dict):  # an object field refused as a whole, and inside
            _merge_into(kept, {NON_FIELD: messages})
        elif isinstance(messages, dict):
            errors[name] = {NON_FIELD: kept, **_copy(messages)}
        else:
            kept.extend(messages)


def _copy(messages: Messages) -> Messages:
    if isinstance(messages, dict):
        return {name: _copy(inner) for name, inner in messages.items()}
    return list(messages)


def _flatten(errors: Mapping[str, Messages], parent: str = "") -> Iterator[tuple[str, str]]:
    for name, messages in errors.items():
        if name == NON_FIELD and parent:
            dotted = parent  # an object field refused as a whole
        else:
            dotted = f"{parent}.{name}" if parent else name
        if isinstance(messages, dict):
            yield from _flatten(messages, dotted)
        else:
            for message in messages:
                yield dotted, message
