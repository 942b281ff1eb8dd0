"""moto's S3 server on loopback, with every request (method, path, headers, body) appended
to a log file: the store's own view of what reached it (python -m tests.storage.moto_logged)."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


class Logged:
    """WSGI middleware: log each request as one JSON line, then hand it to moto."""

    def __init__(self, app: Any, log: str) -> None:
        self.app = app
        self.log = log

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        headers = {
            key[5:].replace("_", "-").title(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        length = int(environ.get("CONTENT_LENGTH") or 0)
        stream = environ["wsgi.input"]
        body = stream.read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        line = {
            "method": environ["REQUEST_METHOD"],
            "path": environ.get("PATH_INFO", ""),
            "query": environ.get("QUERY_STRING", ""),
            "headers": headers,
            "body_head": body[:256].decode("latin-1"),
            "size": len(body),
        }
        with open(self.log, "a", encoding="utf-8") as file:
            file.write(json.dumps(line) + "\n")
        return self.app(environ, start_response)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    app = Logged(DomainDispatcherApplication(create_backend_app), args.log)
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    print(f"PORT {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
