"""The `runcomfy_simulator` pytest fixture, used directly and as a plugin in a fresh run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp
import pytest

from runcomfy_async.simulator import SimulatorConfig
from runcomfy_async.testing import ThreadedSimulator, runcomfy_simulator, runcomfy_simulator_config

__all__ = ["runcomfy_simulator", "runcomfy_simulator_config"]  # fixtures used below


async def test_the_fixture_yields_a_started_fast_simulator(
    runcomfy_simulator: ThreadedSimulator,
) -> None:
    assert runcomfy_simulator.config.time_scale == 0.01
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{runcomfy_simulator.url}/v1/models", headers={"Authorization": "Bearer t"}
        ) as response,
    ):
        assert response.status == 200


@pytest.mark.parametrize("runcomfy_simulator", [{"concurrency": 2, "seed": 5}], indirect=True)
async def test_the_fixture_takes_overrides(runcomfy_simulator: ThreadedSimulator) -> None:
    config = runcomfy_simulator.config
    assert (config.concurrency, config.seed, config.time_scale) == (2, 5, 0.01)


@pytest.mark.parametrize("runcomfy_simulator", [SimulatorConfig(failure_rate=1.0)], indirect=True)
async def test_the_fixture_takes_a_whole_config(runcomfy_simulator: ThreadedSimulator) -> None:
    assert runcomfy_simulator.config.failure_rate == 1.0


def test_the_plugin_works_in_a_users_test_suite(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["runcomfy_async.testing"]\n')
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import pytest

            async def test_uses_it(runcomfy_simulator):
                assert runcomfy_simulator.url.startswith("http://127.0.0.1:")

            @pytest.fixture
            def runcomfy_simulator_config():
                from runcomfy_async.simulator import SimulatorConfig
                return SimulatorConfig(concurrency=7)

            async def test_config_override(runcomfy_simulator):
                assert runcomfy_simulator.config.concurrency == 7
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
