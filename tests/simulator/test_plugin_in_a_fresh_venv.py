"""The pytest plugin as a user gets it: `pip install '.[testing]'` into a fresh venv, then the
README's sample test file under pytest-asyncio strict mode, auto mode, anyio's plugin (with
pytest-asyncio disabled, so nothing imports it), and a plain `def` test using rc.SyncClient."""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_python(marker: str) -> str:
    """The ```python block after `<!-- ci:MARKER -->` in the README."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- ci:{marker} -->\n```python\n(.*?)\n```", text, re.DOTALL)
    assert found, f"README has no ci:{marker} python block"
    return found.group(1) + "\n"


def pytest_in(env: Path, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("RUNCOMFY_", "PYTEST"))}
    return subprocess.run(
        [str(env / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder,
        env=environ,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_readme_test_passes_in_a_fresh_venv_under_every_runner(tmp_path: Path) -> None:
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    install = subprocess.run(
        [str(env / "bin" / "python"), "-m", "pip", "install", "-q", f"{ROOT}[testing]"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    sample = readme_python("user-test")
    assert "@pytest.mark.asyncio\n" in sample
    modes = {
        "strict": (sample, ["-o", "asyncio_mode=strict"]),
        "auto": (sample.replace("@pytest.mark.asyncio\n", ""), ["-o", "asyncio_mode=auto"]),
        "anyio": (
            sample.replace("@pytest.mark.asyncio\n", "@pytest.mark.anyio\n")
            + textwrap.dedent(
                """

                def test_nothing_imported_pytest_asyncio():
                    import sys
                    assert "pytest_asyncio" not in sys.modules
                """
            ),
            ["-p", "no:asyncio"],
        ),
        "sync": (
            sample.split("\n\n\n")[0]
            + textwrap.dedent(
                """


                def test_a_plain_test_gets_a_serving_simulator(runcomfy_simulator):
                    with rc.SyncClient("k", base_url=runcomfy_simulator.url) as client:
                        result = client.run("wan-ai/wan-2-2/text-to-image", {"prompt": "a"})
                    assert result.state is rc.State.SUCCEEDED
                    assert runcomfy_simulator.ledger.calls["submit"] == 1
                """
            ),
            ["-o", "asyncio_mode=strict"],
        ),
    }
    for mode, (source, args) in modes.items():
        folder = tmp_path / mode
        folder.mkdir()
        (folder / "test_user.py").write_text(source, encoding="utf-8")
        done = pytest_in(env, folder, *args)
        assert done.returncode == 0, f"{mode}:\n{done.stdout}\n{done.stderr}"
        expected = 2 if mode == "anyio" else 1
        assert f"{expected} passed" in done.stdout, f"{mode}:\n{done.stdout}"
