"""A web service sharing one Client: POST /generate, GET /jobs/{id}, GET /jobs/{id}/events (SSE)."""

import json
import sys
from collections.abc import AsyncIterator

from _backend import connect
from aiohttp import web

import runcomfy_async as rc

CLIENT, OPEN = web.AppKey("client", rc.Client), web.AppKey("open", set[str])


async def lifetime(app: web.Application) -> AsyncIterator[None]:  # one Client for the app's life
    async with connect(concurrency=2) as client:  # simulated: an account running 2 at a time
        app[CLIENT], app[OPEN] = client, set[str]()  # OPEN: submitted here, not yet seen finished
        yield  # then, on shutdown (Ctrl-C, SIGTERM), cancel those still queued: they cost nothing
        outcomes = await client.cancel_many(app[OPEN], timeout=10.0)  # at once, 10 s at most
        cancelled = [outcome.request_id for outcome in outcomes if outcome.cancelled]
        print(f"shutdown: cancelled {len(cancelled)} queued: {' '.join(cancelled)}", flush=True)


async def generate(request: web.Request) -> web.Response:
    try:  # the typed input checks every rule of the model's schema before anything is sent
        inputs = rc.models.Wan22TextToImage.from_dict(await request.json())
    except (TypeError, ValueError) as exc:  # bad JSON, or rc.InvalidInputError naming the field
        return web.json_response({"error": str(exc)}, status=422)
    submitted = await request.app[CLIENT].submit(inputs)
    request.app[OPEN].add(submitted.request_id)
    return web.json_response({"request_id": submitted.request_id}, status=202)


async def job(request: web.Request) -> web.Response:
    try:  # result() reads any state; it raises only if RunComfy does not know the id
        res = await request.app[CLIENT].result(request.match_info["id"])
    except rc.NotFoundError as exc:
        raise web.HTTPNotFound(text="no such job") from exc
    if res.state.is_terminal:
        request.app[OPEN].discard(res.request_id)
    return web.json_response({"state": res.state, "urls": res.output.urls if res.output else []})


async def events(request: web.Request) -> web.StreamResponse:
    await job(request)  # a 404 before the stream starts if there is no such job
    stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await stream.prepare(request)
    async for state in request.app[CLIENT].watch(request.match_info["id"]):  # pooled polling
        await stream.write(f"event: state\ndata: {json.dumps({'state': state})}\n\n".encode())
    await stream.write(f"event: result\ndata: {(await job(request)).text}\n\n".encode())
    return stream


if __name__ == "__main__":  # python examples/web_backend.py [--port 8080]
    app = web.Application()
    app.cleanup_ctx.append(lifetime)
    app.add_routes([web.post("/generate", generate), web.get("/jobs/{id}", job)])
    app.router.add_get("/jobs/{id}/events", events)
    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 8080
    web.run_app(app, host="127.0.0.1", port=port, shutdown_timeout=5.0)  # streams get 5 s
