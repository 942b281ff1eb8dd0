"""What a user reads when something fails: the CLI's one error line, configuration errors."""

from __future__ import annotations

import traceback

import pytest

import runcomfy_async as rc
from runcomfy_async import _cli
from runcomfy_async.simulator import ModelProfile, Simulator, SimulatorConfig
from tests.reliability._support import WAN

SECRET = "pw-canary-0c4b7e19d2a6"


def test_a_cli_timeout_is_reported_as_a_timeout_not_as_a_file_problem(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = _cli.main(["run", WAN, "-i", "prompt=x", "--simulate", "--timeout", "0.001"])
    err = capsys.readouterr().err
    assert code == 6  # the documented exit status of a timeout
    assert "did not finish" in err
    assert "cannot use" not in err, err


@pytest.mark.parametrize(
    "url",
    [f"ftp://user:{SECRET}@example.com", f"https://user:{SECRET}@example.com:99999"],
    ids=["bad-scheme", "bad-port"],
)
def test_a_refused_base_url_does_not_echo_its_password(url: str) -> None:
    # Found by this suite: the scheme and port errors used to echo the whole URL.
    with pytest.raises(rc.ConfigurationError) as info:
        rc.Client("k", base_url=url)
    assert SECRET not in "".join(traceback.format_exception(info.value))


def test_a_refused_base_url_with_user_info_says_why_without_echoing_it() -> None:
    with pytest.raises(rc.ConfigurationError, match="user name or password") as info:
        rc.Client("k", base_url=f"https://user:{SECRET}@example.com")
    assert SECRET not in str(info.value)


async def test_a_run_timeout_names_the_timeout_the_caller_gave() -> None:
    slow = SimulatorConfig(models={WAN: ModelProfile(run_time=(30.0, 30.0))}, queue_delay=0.0)
    async with Simulator(slow) as sim, rc.Client("k", base_url=sim.url) as client:
        with pytest.raises(rc.WaitTimeoutError) as info:
            await client.run(WAN, {"prompt": "slow"}, timeout=0.5)
    assert info.value.timeout == 0.5
    assert "within 0.5 s" in str(info.value)
