"""The typing test: `mypy --strict` accepts tests/typing/test_public_types.py without a note."""

from __future__ import annotations

import tempfile
from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[2]
TYPES_FILE = ROOT / "tests" / "typing" / "test_public_types.py"
# A cache outside the repository, kept between runs: cold about 3 s, warm well under 1 s.
CACHE = Path(tempfile.gettempdir()) / "runcomfy-async-typing-test-mypy-cache"


def test_public_types_pass_mypy_strict() -> None:
    stdout, stderr, status = api.run(
        [
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(CACHE),
            "--no-error-summary",
            "--show-error-codes",
            str(TYPES_FILE),
        ]
    )
    assert (status, stdout.strip(), stderr.strip()) == (0, "", "")
