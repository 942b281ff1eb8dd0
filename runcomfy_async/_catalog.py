"""The model catalog: paging `GET /v1/models`, and the closest ids to one it does not know."""

from __future__ import annotations

import difflib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import msgspec

from ._errors import BadRequestError, NotFoundError, RunComfyError, UnknownModelError
from ._wire import Body, ModelBody, ModelInfo, model_info_from

__all__ = [
    "PAGE_SIZE",
    "ModelListBody",
    "closest_ids",
    "fresh",
    "is_unknown_model",
    "iter_models",
    "unknown_model_error",
]

PAGE_SIZE = 100  # entries asked for per page (RunComfy's list takes `limit`)
UNKNOWN_MODEL = 400001  # RunComfy's "invalid model or resource id"
SUGGESTIONS = 3  # closest ids named in an unknown-model error


class ModelListBody(Body, kw_only=True):
    """`GET /v1/models`: `{"models": [...], "total": n}` (tolerant: odd entries are skipped)."""

    models: Any = None
    total: Any = None


_ENTRY = msgspec.json.Decoder(ModelBody)

FetchPage = Callable[[Mapping[str, str]], Awaitable[ModelListBody]]


async def iter_models(
    fetch: FetchPage,
    *,
    search: str | None = None,
    category: str | None = None,
    include_schema: bool = True,
    page_size: int = PAGE_SIZE,
) -> AsyncIterator[ModelInfo]:
    """Every catalog entry matching `search` and `category`, page by page until `total`.

    A page that is empty, or a `total` missing or not a number, ends the listing: a catalog
    that misreports its size cannot keep the caller looping.
    """
    offset = 0
    while True:
        params = {"limit": str(page_size), "offset": str(offset)}
        if search:
            params["search"] = search
        if category:
            params["category"] = category
        if not include_schema:
            params["include_schema"] = "false"
        page = await fetch(params)
        entries = page.models if isinstance(page.models, list) else []
        for raw in entries:
            if not isinstance(raw, dict):
                continue
            try:
                body = _ENTRY.decode(msgspec.json.encode(raw))
            except msgspec.ValidationError:
                continue
            info = model_info_from(body, "")
            if info.model_id:
                yield info
        offset += len(entries)
        total = page.total
        known = isinstance(total, int) and not isinstance(total, bool)
        if not entries or not known or offset >= total:
            return


def is_unknown_model(exc: RunComfyError) -> bool:
    """RunComfy says "unknown model" as HTTP 404 or as 400001 (its docs): the same thing."""
    if isinstance(exc, UnknownModelError):
        return True
    return isinstance(exc, NotFoundError) or (
        isinstance(exc, BadRequestError) and exc.error_code == UNKNOWN_MODEL
    )


def closest_ids(model_id: str, known: Iterable[str], count: int = SUGGESTIONS) -> list[str]:
    """The catalog ids most like `model_id`, best first (a typo, a missing letter): close
    enough that sharing a task name (`/text-to-image`) alone does not qualify."""
    return difflib.get_close_matches(model_id, list(dict.fromkeys(known)), n=count, cutoff=0.75)


def unknown_model_error(
    exc: RunComfyError, model_id: str, known: Iterable[str]
) -> UnknownModelError:
    """The UnknownModelError for `exc` (an APIError of an unknown model), naming the closest
    ids of `known` as "did you mean …?"."""
    assert isinstance(exc, NotFoundError | BadRequestError)
    suggestions = closest_ids(model_id, known)
    hint = f" (did you mean {' or '.join(suggestions)}?)" if suggestions else ""
    return UnknownModelError(
        f"unknown model {model_id}: not in RunComfy's catalog{hint}",
        status_code=exc.status_code,
        error_code=exc.error_code,
        body=exc.body,
        model_id=model_id,
        suggestions=tuple(suggestions),
    )


def fresh(exc: RunComfyError) -> RunComfyError:
    """A new copy of a remembered unknown-model error, so each submit it refuses gets its
    own traceback (an exception raised again keeps growing the old one)."""
    if not isinstance(exc, UnknownModelError):
        return exc
    return UnknownModelError(
        exc.message,
        status_code=exc.status_code,
        error_code=exc.error_code,
        body=exc.body,
        model_id=exc.model_id,
        suggestions=exc.suggestions,
    )
