"""A FastAPI service sharing one Client; run: `uvicorn --app-dir examples fastapi_backend:app`."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from _backend import connect
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse

import runcomfy_async as rc


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:  # one Client for the app's life
    async with connect(concurrency=2) as client:  # simulated: an account running 2 at a time
        app.state.client, app.state.open = client, set()  # open: submitted, not seen finished
        yield  # then, on shutdown (Ctrl-C, SIGTERM), cancel those still queued: they cost nothing
        outcomes = await client.cancel_many(app.state.open, timeout=10.0)  # at once, 10 s at most
        cancelled = [outcome.request_id for outcome in outcomes if outcome.cancelled]
        print(f"shutdown: cancelled {len(cancelled)} queued: {' '.join(cancelled)}", flush=True)


app = FastAPI(lifespan=lifespan)


@app.post("/generate", status_code=202)
async def generate(request: Request, body: dict[str, Any]) -> dict[str, str]:
    try:  # the typed input checks every rule of the model's schema before anything is sent
        inputs = rc.models.Wan22TextToImage.from_dict(body)
    except (TypeError, ValueError) as exc:  # rc.InvalidInputError, naming the field
        raise HTTPException(422, detail=str(exc)) from exc
    submitted = await request.app.state.client.submit(inputs)
    request.app.state.open.add(submitted.request_id)
    return {"request_id": submitted.request_id}


@app.get("/jobs/{request_id}")
async def job(request_id: str, request: Request) -> dict[str, Any]:
    try:  # result() reads any state; it raises only if RunComfy does not know the id
        res = await request.app.state.client.result(request_id)
    except rc.NotFoundError as exc:
        raise HTTPException(404, detail="no such job") from exc
    if res.state.is_terminal:
        request.app.state.open.discard(request_id)
    return {"state": res.state, "urls": res.output.urls if res.output else []}


@app.get("/jobs/{request_id}/events")
async def events(request_id: str, request: Request) -> StreamingResponse:
    await job(request_id, request)  # a 404 before the stream starts if there is no such job

    async def stream() -> AsyncIterator[str]:  # Server-Sent Events; pooled polling
        async for state in request.app.state.client.watch(request_id):
            yield f"event: state\ndata: {json.dumps({'state': state})}\n\n"
        yield f"event: result\ndata: {json.dumps(await job(request_id, request))}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream")
