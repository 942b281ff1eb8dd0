"""SyncClient mirrors Client: every public async method (and iterator) has a blocking
counterpart with the same parameters, so the two cannot drift apart."""

from __future__ import annotations

import inspect
from typing import Any

import runcomfy_async as rc

RENAMED = {"aclose": "close"}
NOT_LENT = {"__init__": frozenset({"session"})}  # an aiohttp session belongs to the caller's loop


def public_async_api() -> list[str]:
    names = []
    for name, member in inspect.getmembers(rc.Client, inspect.isfunction):
        if name.startswith("_"):
            continue
        returns = str(inspect.signature(member).return_annotation)
        if inspect.iscoroutinefunction(member) or "Async" in returns or "Batch" in returns:
            names.append(name)
    return names


def parameters(function: object, leave_out: frozenset[str] = frozenset()) -> list[tuple[Any, ...]]:
    signature = inspect.signature(function)  # type: ignore[arg-type]
    return [
        (p.name, p.kind, p.default, p.annotation)
        for p in signature.parameters.values()
        if p.name not in leave_out
    ]


def test_the_async_api_is_what_the_sync_client_covers() -> None:
    assert set(public_async_api()) >= {
        "submit", "status", "result", "wait", "run", "cancel", "map", "download", "aclose",
    }  # fmt: skip


def test_every_public_async_method_has_a_blocking_twin_with_the_same_parameters() -> None:
    for name in [*public_async_api(), "__init__"]:
        twin = getattr(rc.SyncClient, RENAMED.get(name, name), None)
        assert twin is not None, f"SyncClient has no {RENAMED.get(name, name)}()"
        assert not inspect.iscoroutinefunction(twin), name
        expected = parameters(getattr(rc.Client, name), NOT_LENT.get(name, frozenset()))
        assert parameters(twin) == expected, name


def test_the_blocking_twins_are_not_async_iterators() -> None:
    for name in ("map", "watch", "as_completed"):
        returns = str(inspect.signature(getattr(rc.SyncClient, name)).return_annotation)
        assert "Async" not in returns
        assert "Blocking" in returns
