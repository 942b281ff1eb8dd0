"""The aiohttp.web application: routes, auth, fault injection and the call log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import hdrs, web

from ._backend import ApiError, Backend
from ._faults import FaultRule, parse_rules, rule_to_json
from ._fetch import fetch_inputs
from ._ledger import Call

BACKEND = web.AppKey("backend", Backend)


class _SubmitBucket:
    """The submit rate limit: a token bucket on the simulator clock (see SimulatorConfig)."""

    def __init__(self, rate: float | None, burst: float, clock: Callable[[], float]) -> None:
        self._rate, self._burst, self._clock = rate, burst, clock
        self._tokens, self._stamp = burst, clock()

    def take(self) -> float | None:
        """None when this submit may go on (a token taken), else the seconds to wait."""
        if self._rate is None:
            return None
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / self._rate


SUBMITS = web.AppKey("submits", _SubmitBucket)
_encoder = msgspec.json.Encoder()
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_MAX_BODY = 64 * 1024 * 1024  # data: URIs of 16 MB images, base64-encoded, fit


def build_app(backend: Backend) -> web.Application:
    """The simulator's routes, over `backend`."""
    app = web.Application(middlewares=[_calls], client_max_size=_MAX_BODY)
    app[BACKEND] = backend
    config = backend.config
    app[SUBMITS] = _SubmitBucket(config.submit_rate, config.submit_burst, backend.now)
    add = app.router.add_route
    add("GET", "/v1/models", _list_models)
    add("GET", "/v1/models/categories", _list_categories)  # before the model_id route
    add("GET", "/v1/models/{model_id:.+}", _get_model)
    add("POST", "/v1/models/{model_id:.+}", _submit)
    add("GET", "/v1/requests/{request_id}/status", _status)
    add("GET", "/v1/requests/{request_id}/result", _result)
    add("POST", "/v1/requests/{request_id}/cancel", _cancel)
    app.router.add_get("/files/{request_id}/{name}", _file)  # HEAD too
    add("GET", "/_sim/ledger", _admin_ledger)
    add("GET", "/_sim/faults", _admin_faults)
    add("POST", "/_sim/faults", _admin_add_faults)
    add("DELETE", "/_sim/faults", _admin_clear_faults)
    add("POST", "/_sim/reset", _admin_reset)
    return app


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status, content_type="application/json")


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def _submit(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    body = await request.read()
    model_id = request.match_info["model_id"]
    if backend.config.fetch_inputs:
        await _fetch_inputs(backend, model_id, body)
    status, answer = backend.submit(model_id, body, _base(request))
    return _json(answer, status)


async def _fetch_inputs(backend: Backend, model_id: str, body: bytes) -> None:
    """Read the submit's file inputs as RunComfy would; one it cannot read: 422, no job."""
    entry = backend.catalog.get(model_id)
    try:
        inputs = json.loads(body)
    except ValueError:
        return  # the submit answers it
    if entry is None or not isinstance(inputs, dict):
        return
    fetched = await fetch_inputs(model_id, entry.input_schema, inputs)
    backend.ledger.fetched += fetched
    failed = [f"{one.field}: could not be fetched ({one.error})" for one in fetched if one.error]
    if failed:
        raise ApiError(422, 422001, "; ".join(failed))


async def _status(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    return _json(backend.status(request.match_info["request_id"], _base(request)))


async def _result(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    include_cost = request.query.get("include_cost", "").lower() in ("true", "1")
    answer = backend.result(
        request.match_info["request_id"], _base(request), include_cost=include_cost
    )
    return _json(answer)


async def _cancel(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    return _json(backend.cancel(request.match_info["request_id"]), 202)


async def _get_model(request: web.Request) -> web.StreamResponse:
    return _json(request.app[BACKEND].model(request.match_info["model_id"]))


async def _list_models(request: web.Request) -> web.StreamResponse:
    query = request.query
    try:
        limit = int(query.get("limit", "50"))
        offset = int(query.get("offset", "0"))
    except ValueError:
        raise ApiError(422, 422001, "limit and offset must be integers") from None
    if limit < 0 or offset < 0:
        raise ApiError(422, 422001, "limit and offset must be >= 0")
    answer = request.app[BACKEND].models(
        query.get("search", ""),
        query.get("category", ""),
        min(limit, 100),
        offset,
        kind=query.get("kind", ""),
        include_schema=query.get("include_schema", "true").lower() not in ("false", "0", "no"),
    )
    return _json(answer)


async def _list_categories(request: web.Request) -> web.StreamResponse:
    return _json(request.app[BACKEND].categories())


async def _file(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    found = backend.file(request.match_info["request_id"], request.match_info["name"])
    if found is None:
        return _json({"error_code": 404001, "error_message": "file not found or expired"}, 404)
    data, content_type = found
    return web.Response(body=data, content_type=content_type)


_KINDS: dict[_Handler, str] = {
    _submit: "submit",
    _status: "status",
    _result: "result",
    _cancel: "cancel",
    _get_model: "catalog",
    _list_models: "catalog",
    _list_categories: "catalog",
    _file: "files",
}


@web.middleware
async def _calls(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Apply faults and auth around each API call, and log it in the ledger."""
    kind = _KINDS.get(request.match_info.handler)
    if kind is None:  # admin routes and unknown paths
        return await handler(request)
    backend = request.app[BACKEND]
    with backend.handling() as arrived:  # answered as of the moment it arrived
        return await _logged(request, handler, backend, kind, arrived)


async def _logged(
    request: web.Request, handler: _Handler, backend: Backend, kind: str, arrived: float
) -> web.StreamResponse:
    """One API call with its faults applied, logged in the ledger as arrived at `arrived`."""
    subject = request.match_info.get("request_id") or request.match_info.get("model_id")
    model_id = request.match_info.get("model_id") or backend.model_of(subject)
    rule = backend.faults.match(kind, model_id)
    action = rule.action if rule is not None else None
    answered: int | None = None
    response: web.StreamResponse
    try:
        if rule is not None and action in ("status", "error_200"):
            response = _fault_answer(rule)
        elif kind == "submit" and (wait := request.app[SUBMITS].take()) is not None:
            response = _json({"error_code": 429001, "error_message": "rate limited"}, 429)
            if backend.config.submit_retry_after:
                response.headers[hdrs.RETRY_AFTER] = f"{wait:.3f}"
            answered = 429
        elif action == "reset_before_read":
            _drop(request)
            return web.Response()
        else:
            response = await _answer(request, handler, backend, kind)
            if rule is not None and action == "status_after_read":
                response = _fault_answer(rule)
            if rule is not None and action == "latency":
                await asyncio.sleep(rule.seconds)
            if action == "reset_after_read":
                _drop(request)
                return response
            if action == "truncate":
                answered = response.status
                return await _truncate(request, response)
            if rule is not None and action == "other_model_id":
                changed = _other_model_id(response, rule)
                if changed is None:  # an answer naming no model (unfinished): untouched
                    backend.faults.unfire(rule)
                else:
                    response = changed
        answered = response.status
        return response
    finally:
        authorized = hdrs.AUTHORIZATION in request.headers
        call = Call(arrived, kind, subject, answered, action, authorized)
        backend.ledger.record(call)


async def _answer(
    request: web.Request, handler: _Handler, backend: Backend, kind: str
) -> web.StreamResponse:
    try:
        if kind != "files":  # hosted outputs are public, like a CDN
            backend.authorize(request.headers.get(hdrs.AUTHORIZATION))
        return await handler(request)
    except ApiError as exc:
        status = 200 if backend.config.quirks.errors_as_200 else exc.status_code
        return _json(exc.body(), status)


def _fault_answer(rule: FaultRule) -> web.Response:
    status = 200 if rule.action == "error_200" else rule.status_code
    response = _json(rule.error_body(), status)
    retry_after = rule.retry_after_header()
    if retry_after is not None:
        response.headers[hdrs.RETRY_AFTER] = retry_after
    return response


def _other_model_id(response: web.StreamResponse, rule: FaultRule) -> web.Response | None:
    """The answer with its `model_id` replaced (a result naming another model); None for an
    answer that names no model."""
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes) or response.status != 200:
        return None
    answer = msgspec.json.decode(body)
    if not isinstance(answer, dict) or "model_id" not in answer:
        return None
    answer["model_id"] = rule.other_model_id
    return _json(answer, response.status)


def _drop(request: web.Request) -> None:
    """Close the connection at once, unanswered (the client sees a disconnect)."""
    if request.transport is not None:
        request.transport.abort()


async def _truncate(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Send half the body under the full Content-Length, then close."""
    body = response.body if isinstance(response, web.Response) else b""
    data = body if isinstance(body, bytes) else b""
    stream = web.StreamResponse(status=response.status)
    stream.content_type = response.content_type
    stream.content_length = len(data)
    await stream.prepare(request)
    await stream.write(data[: len(data) // 2])
    if request.transport is not None:
        request.transport.close()  # close, not abort: the half body is flushed first
    return stream


async def _admin_ledger(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    return _json({"now": backend.now(), **backend.ledger.to_json()})


async def _admin_faults(request: web.Request) -> web.StreamResponse:
    rules = request.app[BACKEND].faults.rules
    return _json({"rules": [rule_to_json(rule) for rule in rules]})


async def _admin_add_faults(request: web.Request) -> web.StreamResponse:
    faults = request.app[BACKEND].faults
    try:
        faults.add(*parse_rules(msgspec.json.decode(await request.read())))
    except (msgspec.DecodeError, ValueError) as exc:
        return _json({"error": str(exc)}, 400)
    return _json({"rules": [rule_to_json(rule) for rule in faults.rules]})


async def _admin_clear_faults(request: web.Request) -> web.StreamResponse:
    request.app[BACKEND].faults.clear()
    return _json({"rules": []})


async def _admin_reset(request: web.Request) -> web.StreamResponse:
    request.app[BACKEND].reset()
    return _json({"reset": True})
