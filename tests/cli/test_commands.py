"""The single-request commands: what they print, their JSON, their exit statuses and errors."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

import runcomfy_async as rc
from runcomfy_async._cli.output import NotSavedError, exit_code
from tests.cli.conftest import CANARY, RUNWAY, WAN, SimProcess, cli_process


def test_run_simulated_prints_the_output_urls(cli: Any) -> None:
    done = cli("run", WAN, "-i", "prompt=a red fox", "-i", "seed=7", "--simulate")
    assert done.code == 0
    urls = done.out.split()
    assert len(urls) == 1
    assert urls[0].startswith("http://127.0.0.1:")


def test_run_with_out_saves_the_files(cli: Any, tmp_path: Path) -> None:
    done = cli("run", WAN, "-i", "prompt=a red fox", "--simulate", "--out", tmp_path, "--json")
    assert done.code == 0
    answer = json.loads(done.out)
    assert answer["state"] == "succeeded"
    assert len(answer["files"]) == len(answer["urls"]) == 1
    saved = answer["files"][0]
    data = Path(saved["path"]).read_bytes()
    assert Path(saved["path"]).parent == tmp_path.resolve()
    assert hashlib.sha256(data).hexdigest() == saved["sha256"]
    assert len(data) == saved["size"] > 0


def test_submit_simulated_prints_a_request_id(cli: Any) -> None:
    done = cli("submit", WAN, "--input-json", '{"prompt": "a red fox"}', "--simulate")
    assert done.code == 0
    assert len(done.out.split()) == 1
    assert len(done.out.strip()) >= 8


def test_submit_json_is_one_object(cli: Any) -> None:
    done = cli("submit", WAN, "-i", "prompt=x", "--simulate", "--json")
    assert done.code == 0
    answer = json.loads(done.out)
    assert answer["model_id"] == WAN
    assert answer["request_id"]


def test_input_json_and_i_combine_with_i_winning(cli: Any, sim: SimProcess, key_file: Path) -> None:
    done = cli(
        "submit",
        WAN,
        "--input-json",
        '{"prompt": "from json", "seed": 1}',
        "-i",
        "seed=7",
        "-i",
        "prompt_extend=false",
        "--base-url",
        sim.url,
        "--api-key-file",
        key_file,
        "--json",
    )
    assert done.code == 0
    rid = json.loads(done.out)["request_id"]
    job = next(job for job in sim.ledger()["jobs"] if job["request_id"] == rid)
    assert job["inputs"] == {"prompt": "from json", "seed": 7, "prompt_extend": False}


def test_status_result_and_cancel_against_a_running_simulator(
    cli: Any, sim: SimProcess, key_file: Path
) -> None:
    common = ["--base-url", sim.url, "--api-key-file", key_file]
    rid = cli("submit", WAN, "-i", "prompt=a fox", *common).out.strip()
    status = cli("status", rid, *common, "--json")
    assert status.code == 0
    assert json.loads(status.out)["state"] in ("in_queue", "in_progress", "completed")
    cancel = cli("cancel", rid, *common, "--json")
    assert cancel.code == 0
    answer = json.loads(cancel.out)
    assert set(answer) == {"request_id", "cancelled", "outcome", "state"}
    # the request's status after the cancel: never "completed" for a request cancelled or running
    expected = {"cancelled": "cancelled", "not_cancellable": ("in_progress", "completed")}
    assert answer["state"] in expected[answer["outcome"]]
    result = cli("result", rid, *common, "--json")
    assert json.loads(result.out)["request_id"] == rid
    # a cancelled request is a job failure (1); one that ran is fine (0)
    assert result.code == (1 if json.loads(cancel.out)["cancelled"] else 0)


@pytest.mark.parametrize("command", ["status", "result", "cancel"])
def test_lookups_under_simulate_answer_not_found(cli: Any, command: str) -> None:
    done = cli(command, "no-such-request", "--simulate")
    assert done.code == 5
    assert done.out == ""
    assert done.err.count("\n") == 1
    assert done.err.startswith("runcomfy: error: ")


def test_models_info_shows_schema_and_price(cli: Any) -> None:
    done = cli("models", "info", WAN, "--simulate")
    assert done.code == 0
    assert "$0.0400 per output" in done.out
    assert done.out.startswith(f"{WAN}: Wan 2.2 Text to Image (text-to-image)\n")
    assert "prompt" in done.out
    assert "required" in done.out
    answer = json.loads(cli("models", "info", RUNWAY, "--simulate", "--json").out)
    assert answer["price_unit"] == "second"
    assert answer["input_schema"]["required"] == ["promptText", "promptImage"]
    assert answer["categories"] == ["image-to-video"]
    assert answer["name"] == "Runway Gen-3 Alpha Turbo Image to Video"
    assert "per second" in answer["pricing_note"]
    kling = cli("models", "info", "kling/kling-2-1/master/text-to-video", "--simulate").out
    assert "\npricing: Billed per second of output video" in kling


def test_bad_enum_value_exits_2_with_one_line_naming_the_field(cli: Any) -> None:
    done = cli("run", WAN, "-i", "prompt=x", "-i", "aspect_ratio=1:1", "--simulate")
    assert done.code == 2
    assert done.out == ""
    assert done.err.count("\n") == 1
    assert done.err.startswith("runcomfy: error: ")
    assert "aspect_ratio" in done.err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-i", "prompt"], "NAME=VALUE"),
        (["--input-json", "{nope"], "--input-json"),
        (["--input-json", "[1, 2]"], "JSON object"),
        (["-i", "prompt=x", "-i", "colour=red"], "colour"),
        (["-i", "prompt=x", "-i", "seed=1.5"], "seed takes an integer"),
    ],
)
def test_bad_inputs_exit_2_before_any_call(cli: Any, args: list[str], words: str) -> None:
    done = cli("submit", WAN, *args, "--simulate")
    assert done.code == 2
    assert done.err.count("\n") == 1
    assert words in done.err


def test_no_key_says_how_to_set_one(cli: Any) -> None:
    done = cli("run", WAN, "-i", "prompt=x")
    assert done.code == 2
    assert done.err.count("\n") == 1
    assert "RUNCOMFY_API_KEY" in done.err
    assert "--simulate" in done.err


def test_key_from_the_environment_is_used(
    cli: Any, sim: SimProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNCOMFY_API_KEY", CANARY)
    done = cli("submit", WAN, "-i", "prompt=x", "--base-url", sim.url)
    assert done.code == 0


def test_wrong_key_exits_3_without_showing_either_key(
    cli: Any, sim: SimProcess, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("rc-wrong-key-5e8a1f\n", encoding="utf-8")
    done = cli("submit", WAN, "-i", "prompt=x", "--base-url", sim.url, "--api-key-file", wrong)
    assert done.code == 3
    assert "rc-wrong-key-5e8a1f" not in done.text
    assert done.err.count("\n") == 1


def test_missing_key_file_exits_2(cli: Any, tmp_path: Path) -> None:
    done = cli("status", "r1", "--api-key-file", tmp_path / "absent.txt")
    assert done.code == 2
    assert "absent.txt" in done.err


def test_run_timeout_exits_6(cli: Any) -> None:
    done = cli("run", WAN, "-i", "prompt=x", "--simulate", "--timeout", "0.001")
    assert done.code == 6
    lines = done.err.splitlines()  # the request_id, the error, the command that waits again
    assert len(lines) == 3
    assert lines[0].startswith("runcomfy: submitted request ")
    assert lines[1].startswith("runcomfy: error: ")
    assert "runcomfy wait " in lines[2]


def test_unknown_model_is_not_found(cli: Any) -> None:
    done = cli("models", "info", "acme/no-such-model", "--simulate")
    assert done.code == 5  # RunComfy answers 400001 "invalid model_id"
    assert "unknown model acme/no-such-model" in done.err


def test_argparse_usage_errors_exit_2(cli: Any) -> None:
    assert cli("run").code == 2
    assert cli("batch", WAN, "x.txt").code == 2  # --out is required
    assert cli("frobnicate").code == 2


def test_help_documents_every_exit_status(cli: Any) -> None:
    done = cli("--help")
    assert done.code == 0
    for code in ("0", "1", "2", "3", "4", "5", "6", "7", "130"):
        assert f"\n  {code} " in done.out


def test_simulator_command_is_delegated(cli: Any) -> None:
    done = cli("simulator", "--help")
    assert done.code == 0
    assert "runcomfy simulator" in done.out
    assert "--time-scale" in done.out


ERRORS: list[tuple[Exception, int]] = [
    (rc.RequestFailedError("x", request_id="r"), 1),
    (rc.RequestCancelledError("x", request_id="r"), 1),
    (rc.InvalidInputError("x"), 2),
    (rc.BadRequestError("x", status_code=400), 2),
    (rc.ConfigurationError("x"), 2),
    (rc.JournalMismatchError("x"), 2),
    (rc.AuthenticationError("x", status_code=401), 3),
    (rc.PermissionDeniedError("x", status_code=403), 3),
    (rc.InsufficientBalanceError("x", status_code=402), 3),
    (rc.TransportError("x"), 4),
    (rc.TransportTimeoutError("x"), 4),
    (rc.ServerError("x", status_code=503), 4),
    (rc.RateLimitError("x", status_code=429), 4),
    (rc.SubmissionUnknownError("x", model_id=WAN, inputs={}), 4),
    (rc.UnexpectedResponseError("x"), 4),
    (rc.NotFoundError("x", status_code=404), 5),
    (rc.WaitTimeoutError("x", request_id="r", timeout=1.0), 6),
    (NotSavedError("x"), 7),
]


@pytest.mark.parametrize(("exc", "code"), ERRORS, ids=lambda v: type(v).__name__)
def test_exit_status_table(exc: Exception, code: int) -> None:
    assert exit_code(exc) == code


def test_as_a_process_run_prints_urls_and_never_the_key(sim: SimProcess, key_file: Path) -> None:
    process = cli_process(
        "run", WAN, "-i", "prompt=a fox", "--base-url", sim.url, "--api-key-file", key_file
    )
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert out.strip().startswith(sim.url)
    assert CANARY not in out + err
    bad = cli_process("run", WAN, "-i", "aspect_ratio=oops", "--simulate")
    out, err = bad.communicate(timeout=30)
    assert bad.returncode == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_models_codegen_writes_a_typed_input_that_checks_what_the_schema_says(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "runway_input.py"
    done = cli("models", "codegen", RUNWAY, "--simulate", "-o", target, "--class-name", "Runway")
    assert done.code == 0, done.err
    assert f"wrote {target}" in done.out
    spec = importlib.util.spec_from_file_location("runway_input", target)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "runway_input", module)  # msgspec resolves through it
    spec.loader.exec_module(module)
    runway = module.Runway
    good = runway(prompt_text="waves", prompt_image="https://example.com/a.png", duration=10)
    assert good.validate() is good
    with pytest.raises(rc.InvalidInputError, match="duration"):
        runway(prompt_text="waves", prompt_image="https://example.com/a.png", duration=7).validate()
    again = cli("models", "codegen", RUNWAY, "--simulate", "-o", target)
    assert again.code == 2
    assert "exists: pass --force" in again.err
    printed = cli("models", "codegen", RUNWAY, "--simulate")
    assert printed.code == 0
    assert "class RunwayGen3" in printed.out
