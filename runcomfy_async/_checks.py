"""Checks before a paid submit: the catalog schema of models without a typed input, and media."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msgspec

from ._catalog import fresh, is_unknown_model
from ._errors import RunComfyError
from ._inputs import TYPED
from ._preflight import Preflight
from ._retry import Clock
from ._schema import SchemaValidator, build_validator
from ._wire import ModelInfo

__all__ = ["InputChecks"]

logger = logging.getLogger("runcomfy_async")

RETRY_CATALOG_AFTER = 60.0  # seconds before a model's catalog entry is asked for again


class InputChecks:
    """One client's pre-submit checks.

    Each model's catalog schema is fetched once per client (concurrent submits share the
    fetch) and turned into a validator. A model RunComfy's catalog does not list is
    refused (UnknownModelError, naming the closest ids it does list) unless `validate` is
    off; a catalog that cannot be reached never blocks a submit: it is logged, and asked
    again after `RETRY_CATALOG_AFTER` seconds.
    """

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[ModelInfo]],
        clock: Clock,
        *,
        allow_loopback: bool = False,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._allow_loopback = allow_loopback  # http file URLs to loopback: the simulator's
        self._validators: dict[str, SchemaValidator | None] = {}
        self._retry_at: dict[str, float] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._unknown: dict[str, RunComfyError] = {}  # models the catalog does not list

    async def validator(self, model_id: str) -> SchemaValidator | None:
        """The model's validator, or None when its schema is not to be had."""
        if model_id in self._validators:
            return self._validators[model_id]
        lock = self._locks.setdefault(model_id, anyio.Lock())
        async with lock:
            if model_id in self._validators:
                return self._validators[model_id]
            if self._clock() < self._retry_at.get(model_id, -1.0):
                return None
            try:
                info = await self._fetch(model_id)
            except RunComfyError as exc:
                if is_unknown_model(exc):  # refused at check(): the submit would be too
                    self._unknown[model_id] = exc
                    self._validators[model_id] = None
                    return None
                # An outage must not block the submit itself.
                logger.warning(
                    "the catalog entry of %s could not be read (%s): inputs sent unchecked",
                    model_id,
                    exc,
                )
                self._retry_at[model_id] = self._clock() + RETRY_CATALOG_AFTER
                return None
            return self.learn(info)

    def learn(self, info: ModelInfo) -> SchemaValidator:
        """The validator of a catalog entry read anyway (Client.model_info): no second call."""
        validator = self._validators.get(info.model_id)
        if validator is None:
            validator = build_validator(
                info.model_id, info.input_schema, allow_loopback=self._allow_loopback
            )
            for note in validator.notes:
                logger.debug("%s schema: %s", info.model_id, note)
            self._validators[info.model_id] = validator
        return validator

    async def check(
        self, model_id: str, body: bytes, *, validate: bool, preflight: Preflight | None
    ) -> None:
        """Raise InvalidInputError (PreflightError for files) before `body` is submitted.

        Inputs of a model with a typed input were checked by it already: the catalog is
        asked only when pre-flight needs the media rules.
        """
        schema = validate and model_id not in TYPED
        if not schema and preflight is None:
            return
        validator = await self.validator(model_id)
        if schema and model_id in self._unknown:
            raise fresh(self._unknown[model_id])
        if validator is None:
            return
        inputs: dict[str, Any] = msgspec.json.decode(body)
        if schema:  # a mistyped name first: its value's rule would be the wrong one
            validator.refuse_unknown(inputs)
            validator.validate_json(body)
        if preflight is not None and validator.media:
            await preflight.check(model_id, inputs, validator.media)
