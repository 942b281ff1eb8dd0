"""The key in every form a server may echo is scrubbed from a body, and a clean body is left
as it came (scrubbing runs on every answer, so it has a quick path for clean ones)."""

from __future__ import annotations

import base64
import json
import random
from urllib.parse import quote

from runcomfy_async._config import Secret

KEY = "rk-live/8f3a9c2d+1e4b5a6f"  # a slash and a plus: quoted and JSON-escaped forms differ


def echoes() -> list[str]:
    forms = [KEY, KEY.upper(), KEY.swapcase(), quote(KEY, safe=""), json.dumps(KEY)[1:-1]]
    forms += [KEY.replace("/", "\\/"), KEY.encode().hex(), KEY.encode().hex().upper()]
    for data in (KEY.encode(), b"Bearer " + KEY.encode(), KEY.encode() + b":"):
        for lead in (b"", b"x", b"xy"):  # every base64 alignment inside a longer text
            text = base64.b64encode(lead + data).decode()
            forms += [text, base64.urlsafe_b64encode(lead + data).decode(), quote(text, safe="")]
    return forms


def body_with(echo: str, rng: random.Random) -> bytes:
    """A body with `echo` in it as the server wrote it (not re-escaped by this test)."""
    words = ["output", "images", "https://cdn.example/a.png", "0.04", "ok"]
    chosen = [rng.choice(words) for _ in range(8)]
    chosen.insert(rng.randrange(len(chosen) + 1), echo)
    return (
        '{"request_id": "r1", "status": "failed", "error": "' + " ".join(chosen) + '"}'
    ).encode()


def test_every_echoed_form_is_scrubbed_from_a_body() -> None:
    secret, rng = Secret(KEY), random.Random(3)
    key_b64 = base64.b64encode(KEY.encode()).decode()
    for echo in echoes():
        body = body_with(echo, rng)
        scrubbed = secret.scrub_bytes(body).decode()
        assert "********" in scrubbed, echo
        for trace in (KEY, KEY.upper(), KEY.encode().hex(), key_b64[4:16], quote(KEY, safe="")):
            assert trace.lower() not in scrubbed.lower(), (echo, scrubbed)


def test_a_clean_body_comes_back_unchanged() -> None:
    secret, rng = Secret(KEY), random.Random(4)
    for _ in range(50):
        body = body_with("nothing secret here: rk-live", rng)
        assert secret.scrub_bytes(body) == body
    near = KEY[:-1].encode()  # all but the key's last character is no form of the key
    assert secret.scrub_bytes(b'{"x": "' + near + b'"}') == b'{"x": "' + near + b'"}'
