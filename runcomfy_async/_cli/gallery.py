"""`runcomfy batch`'s gallery: DIR/index.html, one self-contained page of every input."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .._place import replace_whole
from .output import duration, usd

__all__ = ["read_manifest", "render_gallery", "write_gallery"]

_IMAGES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".avif")
_VIDEOS = (".mp4", ".webm", ".mov", ".m4v")
_AUDIO = (".mp3", ".wav", ".ogg", ".m4a", ".flac")
PRELOAD_BYTES = 16 * 1024 * 1024  # videos up to this size load whole: no spinner on the frame
_GOOD = frozenset({"succeeded"})
_BAD = frozenset({"failed", "skipped", "unknown"})
_PROMPTS = ("prompt", "promptText", "prompt_text", "text")

_STYLE = """
:root { color-scheme: light dark; --bg: #f5f5f7; --card: #fff; --ink: #1d1d1f; --dim: #6e6e73;
  --line: #e3e3e8; --ok: #1a7f37; --bad: #c62828; --warn: #9a6700; --chip: #ececf0; }
@media (prefers-color-scheme: dark) { :root { --bg: #111114; --card: #1c1c21; --ink: #f2f2f5;
  --dim: #a0a0aa; --line: #2e2e36; --ok: #4ac26b; --bad: #ff6b6b; --warn: #e3b341;
  --chip: #2a2a31; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { position: sticky; top: 0; z-index: 2; padding: 18px 28px 14px;
  background: color-mix(in srgb, var(--bg) 88%, transparent); backdrop-filter: blur(8px);
  border-bottom: 1px solid var(--line); }
h1 { margin: 0 0 2px; font-size: 20px; font-weight: 650; }
.model { color: var(--dim); font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; }
.totals { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 12px; }
.total { background: var(--card); border: 1px solid var(--line); border-radius: 999px;
  padding: 4px 12px; font-size: 13px; }
.total b { font-size: 15px; margin-right: 4px; }
.total.ok b { color: var(--ok); } .total.bad b { color: var(--bad); }
main { display: grid; gap: 18px; padding: 22px 28px 40px;
  grid-template-columns: repeat(auto-fill, minmax(270px, 1fr)); }
.item { background: var(--card); border: 1px solid var(--line); border-radius: 14px;
  overflow: hidden; display: flex; flex-direction: column;
  box-shadow: 0 1px 2px rgb(0 0 0 / 6%); }
.item.failed { border: 2px solid var(--bad); }
.media { display: grid; gap: 2px; background: #0b0b0d; aspect-ratio: 16 / 10;
  grid-template-columns: repeat(auto-fit, minmax(0, 1fr)); }
.media a, .media video { display: block; width: 100%; height: 100%; min-height: 0; }
.media img, .media video { width: 100%; height: 100%; object-fit: cover; display: block; }
.media img { transition: transform .2s ease; } .media a:hover img { transform: scale(1.03); }
.media audio { align-self: center; width: 92%; margin: auto; }
.placeholder { aspect-ratio: 16 / 10; display: flex; align-items: center; justify-content: center;
  text-align: center; padding: 16px; color: var(--dim); background: var(--chip);
  font-size: 13px; }
.failed .placeholder { background: color-mix(in srgb, var(--bad) 12%, var(--card));
  color: var(--bad); font-weight: 600; }
.body { padding: 12px 14px 14px; display: flex; flex-direction: column; gap: 8px; flex: 1; }
.top { display: flex; justify-content: space-between; align-items: center; gap: 8px; }
.index { color: var(--dim); font-size: 12px; }
.state { font-size: 11px; font-weight: 700; text-transform: uppercase; letter-spacing: .04em;
  padding: 2px 8px; border-radius: 999px; background: var(--chip); color: var(--dim); }
.state.succeeded { color: var(--ok); background: color-mix(in srgb, var(--ok) 14%, var(--card)); }
.state.failed { color: #fff; background: var(--bad); }
.state.skipped { color: var(--bad); background: color-mix(in srgb, var(--bad) 12%, var(--card)); }
.state.running, .state.unknown { color: var(--warn); }
.prompt { margin: 0; font-size: 14.5px; font-weight: 500; word-break: break-word; }
dl { margin: 0; display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; font-size: 12px; }
dt { color: var(--dim); } dd { margin: 0; word-break: break-all;
  font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
.error { margin: 0; padding: 8px 10px; border-radius: 8px; font-size: 12.5px;
  background: color-mix(in srgb, var(--bad) 10%, var(--card)); color: var(--bad);
  word-break: break-word; }
footer { color: var(--dim); font-size: 12px; padding: 0 28px 28px; }
"""


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The manifest's entries (JSON lines), in its order; unreadable lines are left out."""
    entries = []
    with path.open(encoding="utf-8") as file:
        for line in file:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
    return entries


def write_gallery(folder: Path, manifest: Path, *, model_id: str, wall: float) -> Path:
    """Write `folder/index.html` from the manifest (by a rename: never half a page)."""
    page = render_gallery(read_manifest(manifest), model_id=model_id, wall=wall)
    target = folder / "index.html"
    replace_whole(target, page.encode("utf-8"))
    return target


def render_gallery(entries: Sequence[Mapping[str, Any]], *, model_id: str, wall: float) -> str:
    """The gallery page: a header of totals, then one card per input in input order."""
    ordered = sorted(entries, key=lambda e: (e.get("index") is None, e.get("index") or 0))
    states = [str(entry.get("state")) for entry in ordered]
    costs = [e["cost"] for e in ordered if isinstance(e.get("cost"), int | float)]
    cost = usd(sum(costs)) if costs else "not reported"
    totals = [
        ("", len(ordered), "inputs"),
        ("ok", sum(s in _GOOD for s in states), "succeeded"),
        ("bad", sum(s in _BAD for s in states), "failed"),
    ]
    others = len(ordered) - totals[1][1] - totals[2][1]
    chips = [
        f'<span class="total {kind}" data-total="{word}"><b>{count}</b>{word}</span>'
        for kind, count, word in totals
    ]
    if others:
        chips.append(f'<span class="total" data-total="other"><b>{others}</b>other</span>')
    chips.append(f'<span class="total" data-total="cost"><b>{cost}</b>cost</span>')
    chips.append(f'<span class="total" data-total="wall"><b>{duration(wall)}</b>wall time</span>')
    cards = "\n".join(_card(entry) for entry in ordered)
    title = f"runcomfy batch: {model_id}"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
<h1>Batch gallery</h1>
<div class="model">{escape(model_id)}</div>
<div class="totals">{"".join(chips)}</div>
</header>
<main>
{cards}
</main>
<footer>Written by runcomfy batch; the manifest (manifest.jsonl) has every field.</footer>
</body>
</html>
"""


def _card(entry: Mapping[str, Any]) -> str:
    state = str(entry.get("state") or "unknown")
    bad = state in _BAD
    raw = entry.get("input")
    inputs: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    prompt_key, prompt = _prompt(inputs)
    files = [f for f in entry.get("files") or [] if isinstance(f, dict) and f.get("path")]
    media = _media(files, prompt or state)
    if not media:
        word = {"succeeded": "no output saved", "running": "still running (billed)"}
        icon = "✕ " if bad else ""
        media = f'<div class="placeholder">{icon}{escape(word.get(state, state))}</div>'
    where = f"#{entry.get('index')}"
    if entry.get("line") is not None:
        where += f" · line {entry.get('line')}"
    rows = [(k, v) for k, v in inputs.items() if k != prompt_key]
    if isinstance(entry.get("cost"), int | float):
        rows.append(("cost", usd(float(entry["cost"]))))
    if entry.get("request_id"):
        rows.append(("request_id", entry["request_id"]))
    details = "".join(f"<dt>{escape(str(k))}</dt><dd>{escape(_text(v))}</dd>" for k, v in rows)
    error = entry.get("error")
    parts = [
        f'<div class="top"><span class="index">{escape(where)}</span>'
        f'<span class="state {escape(state)}">{escape(state)}</span></div>',
        f'<p class="prompt">{escape(prompt)}</p>' if prompt else "",
        f"<dl>{details}</dl>" if details else "",
        f'<p class="error">{escape(_text(error))}</p>' if error not in (None, "") else "",
    ]
    classes = "item failed" if bad else "item"
    return (
        f'<article class="{classes}" data-state="{escape(state)}" '
        f'data-index="{escape(str(entry.get("index")))}">'
        f'{media}<div class="body">{"".join(parts)}</div></article>'
    )


def _media(files: Sequence[Mapping[str, Any]], label: str) -> str:
    shown = []
    for f in files:
        path = str(f["path"])
        if "://" in path:  # in an object store (s3://…): nothing a page can show offline
            shown.append(f'<div class="placeholder stored">saved to {escape(path)}</div>')
            continue
        src = quote(path.replace(os.sep, "/"))
        name = path.lower()
        alt = escape(label, quote=True)
        if name.endswith(_IMAGES):
            shown.append(f'<a href="{src}" title="full size"><img src="{src}" alt="{alt}"></a>')
        elif name.endswith(_VIDEOS):  # #t: the first frame shows before play (its poster)
            size = f.get("size")
            small = isinstance(size, int) and size <= PRELOAD_BYTES
            shown.append(
                f'<video src="{src}#t=0.001" controls preload="{"auto" if small else "metadata"}"'
                f' playsinline muted loop title="{alt}"></video>'
            )
        elif name.endswith(_AUDIO):
            shown.append(f'<audio src="{src}" controls preload="none"></audio>')
        else:
            shown.append(f'<a class="placeholder" href="{src}">{escape(Path(path).name)}</a>')
    return f'<div class="media">{"".join(shown)}</div>' if shown else ""


def _prompt(inputs: Mapping[str, Any]) -> tuple[str | None, str]:
    """The input that reads as the prompt (`prompt`, else the first text input)."""
    for key in _PROMPTS:
        if isinstance(inputs.get(key), str):
            return key, inputs[key]
    for key, value in inputs.items():
        if isinstance(value, str) and not value.startswith(("http", "data:")):
            return key, value
    return None, ""


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
