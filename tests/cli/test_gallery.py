"""`runcomfy batch --out DIR` writes DIR/index.html: rendered in real headless Chromium, what a
person sees (images load, videos show a frame, failed inputs are marked, the totals)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.cli.chromium import Chromium
from tests.cli.conftest import CANARY, WAN, SimProcess, manifest

KLING = "kling/kling-2-1/master/text-to-video"
SHOTS = os.environ.get("RUNCOMFY_GALLERY_SHOTS")  # a folder to keep the screenshots in

LOADED = """Promise.all([...document.images].map(i => i.decode().then(
    () => i.naturalWidth > 0, () => false)))"""
VIDEOS = """Promise.all([...document.querySelectorAll('video')].map(v => new Promise(done => {
    const shown = () => v.readyState >= 2 && !v.seeking;
    if (shown()) return done(v.videoWidth);
    for (const e of ['loadeddata', 'seeked', 'canplay']) {
        v.addEventListener(e, () => shown() && done(v.videoWidth));
    }
    v.addEventListener('error', () => done(0));
})))"""
CARDS = """[...document.querySelectorAll('article.item')].map(a => ({
    index: Number(a.dataset.index), failed: a.classList.contains('failed'),
    badge: a.querySelector('.state').innerText, prompt: a.querySelector('.prompt')?.innerText,
    error: a.querySelector('.error')?.innerText || null,
    errorShown: (a.querySelector('.error')?.offsetHeight || 0) > 0,
    border: getComputedStyle(a).borderTopColor, images: a.querySelectorAll('img').length,
    text: a.innerText}))"""
TOTALS = """Object.fromEntries([...document.querySelectorAll('.total')].map(
    t => [t.dataset.total, t.querySelector('b').innerText]))"""
REMOTE = """[...document.querySelectorAll('[src],[href]')].map(e => e.getAttribute('src')
    || e.getAttribute('href')).filter(u => /^[a-z]+:/i.test(u))"""


@pytest.fixture(scope="module")
def flaky() -> Any:
    """A simulator that fails a share of runs (seeded: with one submit at a time, the same
    ones every time)."""
    process = SimProcess(
        "--time-scale", "0.05", "--failure-rate", "0.4", "--seed", "11", key=CANARY
    )
    try:
        yield process
    finally:
        process.stop()


async def render(folder: Path) -> dict[str, Any]:
    async with Chromium() as browser:
        page = await browser.page()
        await page.open((folder / "index.html").as_uri())
        seen = {
            "loaded": await page.evaluate(LOADED),
            "videos": await page.evaluate(VIDEOS),
            "cards": await page.evaluate(CARDS),
            "totals": await page.evaluate(TOTALS),
            "remote": await page.evaluate(REMOTE),
            "title": await page.evaluate("document.title"),
        }
        await asyncio.sleep(1.0)  # for the picture only: players' loading spinners fade out
        seen["shot"] = await page.screenshot()
        await page.socket.close()
    return seen


def look(seen: dict[str, Any], folder: Path, name: str) -> None:
    """Keep the screenshot beside the gallery (and in $RUNCOMFY_GALLERY_SHOTS, to look at)."""
    for where in [folder, *([Path(SHOTS)] if SHOTS else [])]:
        (where / f"{name}.png").write_bytes(seen["shot"])


def test_the_gallery_shows_every_input_in_order_with_images_and_failures_marked(
    cli: Any, flaky: SimProcess, key_file: Path, tmp_path: Path
) -> None:
    prompts = [f"a {colour} fox in the snow" for colour in ("red", "blue", "green", "grey")]
    prompts += ["an owl, watercolour", "x" * 900, "a whale at dawn", "a cat on a piano"]
    source = tmp_path / "prompts.txt"
    source.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    at = ["--base-url", flaky.url, "--api-key-file", key_file]
    done = cli("batch", WAN, source, "--out", out, "--max-in-flight", "1", *at)
    assert f"  gallery: {out.resolve() / 'index.html'}" in done.out
    rows = manifest(out)
    states = [row["state"] for row in rows]
    assert "succeeded" in states
    assert {"failed", "skipped"} <= set(states)  # a run that failed, a prompt over 800 chars

    seen = asyncio.run(render(out))
    look(seen, out, "gallery-images")
    assert seen["remote"] == []  # nothing to fetch from the network
    assert seen["title"] == f"runcomfy batch: {WAN}"
    cards = seen["cards"]
    assert [card["index"] for card in cards] == list(range(len(prompts)))  # input order
    assert seen["loaded"] == [True] * states.count("succeeded")  # every image decoded
    for card, row, prompt in zip(cards, rows, prompts, strict=True):
        assert card.get("prompt") == (prompt if row["input"] is not None else None)
        bad = row["state"] in ("failed", "skipped")
        assert card["failed"] is bad
        assert card["badge"].lower() == row["state"]
        assert card["images"] == (1 if row["state"] == "succeeded" else 0)
        if bad:
            assert card["errorShown"]
            assert card["border"] == cards[[c["failed"] for c in cards].index(True)]["border"]
        if row["request_id"]:
            assert row["request_id"] in card["text"]
    ok = [c["border"] for c in cards if not c["failed"]]
    assert ok[0] not in [c["border"] for c in cards if c["failed"]]  # marked, not alike
    assert seen["totals"]["succeeded"] == str(states.count("succeeded"))
    assert seen["totals"]["failed"] == str(states.count("failed") + states.count("skipped"))
    assert seen["totals"]["inputs"] == str(len(prompts))
    cost = sum(row["cost"] or 0 for row in rows)
    assert seen["totals"]["cost"] == f"${cost:,.4f}"
    assert seen["shot"][:8] == b"\x89PNG\r\n\x1a\n"

    (out / "index.html").unlink()  # a resumed run writes it again, with the same inputs
    again = cli("batch", WAN, source, "--out", out, *at)
    assert again.code == done.code
    assert "resumed from the journal" in again.out
    assert json.dumps(prompts[0])[1:-1] in (out / "index.html").read_text(encoding="utf-8")


def test_a_video_batch_shows_a_player_with_its_first_frame(cli: Any, tmp_path: Path) -> None:
    source = tmp_path / "prompts.txt"
    source.write_text("a fox runs\nwaves at night\n", encoding="utf-8")
    out = tmp_path / "video"
    done = cli("batch", KLING, source, "--out", out, "--simulate")
    assert done.code == 0, done.err
    seen = asyncio.run(render(out))
    look(seen, out, "gallery-videos")
    assert seen["videos"] == [64, 64]  # both players decoded a frame of the 64x36 clip
    assert [card["failed"] for card in seen["cards"]] == [False, False]
    assert seen["remote"] == []


def test_an_output_kept_in_an_object_store_is_named_not_fetched() -> None:
    from runcomfy_async._cli.gallery import render_gallery

    entry = {"index": 0, "line": 1, "state": "succeeded", "input": {"prompt": "a fox"}}
    entry["files"] = [{"path": "s3://bucket/run/0000-a-fox-0.png", "size": 10, "sha256": "0"}]
    page = render_gallery([entry], model_id=WAN, wall=1.0)
    assert "saved to s3://bucket/run/0000-a-fox-0.png" in page
    assert "<img" not in page  # an s3:// URL is nothing a browser can load
