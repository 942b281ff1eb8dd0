"""`runcomfy batch` finished, checked and rerun: --retry-failed, the estimate of THIS run,
the manifest of every input the journal holds, --name-template, repeated lines, counts after
Ctrl-C, and --simulate across processes."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any

from tests.cli.conftest import CANARY, WAN, SimProcess, cli_process, lines_of, manifest
from tests.cli.test_interrupt import wait_for


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_retry_failed_resubmits_only_the_failed_and_the_estimate_says_what_it_costs(
    cli: Any, key_file: Path, tmp_path: Path
) -> None:
    sim = SimProcess("--time-scale", "0.05", "--failure-rate", "0.5", "--seed", "3", key=CANARY)
    try:
        prompts = write(tmp_path / "p.txt", *(f"prompt {n}" for n in range(8)))
        out = tmp_path / "out"
        args = ["batch", WAN, prompts, "--out", out, "--base-url", sim.url]
        args += ["--api-key-file", key_file]
        first = cli(*args)
        failed = [row for row in manifest(out) if row["state"] == "failed"]
        assert 0 < len(failed) < 8, first.out
        assert first.code == 1
        assert "failures (all in the manifest):" in first.out
        for row in failed:  # each reason, with the line the user knows
            assert f"line {row['line']}: " in first.out
        spent = sum(row["cost"] or 0.0 for row in manifest(out))

        again = cli(*args, "--max-cost", "0")  # nothing to submit: $0, never refused
        assert again.code == 1
        assert sim.submits() == 8
        assert "8 inputs, 0 to submit; estimated cost $0.0000" in again.err
        if spent:
            assert f"the journal holds ${spent:,.4f} already spent" in again.err
        assert "--retry-failed submits them again" in again.out

        retry = cli(*args, "--retry-failed")
        assert f"8 inputs, {len(failed)} to submit; estimated cost ${0.04 * len(failed):.4f}" in (
            retry.err
        )
        assert sim.submits() == 8 + len(failed)  # the failed ones, and only they
        rows = manifest(out)
        assert len(rows) == 8
        retried = {row["index"]: row["request_id"] for row in rows}
        assert all(retried[row["index"]] != row["request_id"] for row in failed)
    finally:
        sim.stop()


def test_a_second_batch_into_the_same_out_keeps_the_earlier_rows_in_input_order(
    cli: Any, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    one = write(tmp_path / "one.txt", "# first file", "a red fox", "", "a grey wolf")
    two = write(tmp_path / "two.txt", "a lighthouse")
    assert cli("batch", WAN, one, "--out", out, "--simulate").code == 0
    assert cli("batch", WAN, two, "--out", out, "--simulate").code == 0
    rows = manifest(out)
    assert [(row["input"]["prompt"], row["line"]) for row in rows] == [
        ("a red fox", 2),
        ("a lighthouse", 1),
        ("a grey wolf", 4),
    ]  # input order: by index, then as the journal took them
    for row in rows:
        assert set(row) >= {"line", "index", "model_id", "request_id", "state", "error"}
        assert {"cost", "files"} <= set(row)
        assert row["model_id"] == WAN
        assert row["state"] == "succeeded"
        assert row["request_id"]
        assert (out / row["files"][0]["path"]).is_file()


def test_identical_lines_are_separate_requests_paid_once_per_line(
    cli: Any, sim: SimProcess, key_file: Path, tmp_path: Path
) -> None:
    prompts = write(tmp_path / "p.txt", "same fox", "same fox", "same fox")
    out = tmp_path / "out"
    args = ["batch", WAN, prompts, "--out", out, "--base-url", sim.url, "--api-key-file", key_file]
    before = sim.submits()
    assert cli(*args).code == 0
    assert cli(*args).code == 0
    assert sim.submits() == before + 3
    rows = manifest(out)
    assert len({row["request_id"] for row in rows}) == 3


def test_name_template_names_the_files_from_line_and_prompt(cli: Any, tmp_path: Path) -> None:
    prompts = write(tmp_path / "p.txt", "# comment", "A Red Fox, in snow!")
    out = tmp_path / "out"
    done = cli(
        "batch",
        WAN,
        prompts,
        "--out",
        out,
        "--simulate",
        "--name-template",
        "L{line}-{slug}-{n}.{ext}",
    )
    assert done.code == 0, done.err
    assert (out / "L2-a-red-fox-in-snow-0.png").is_file()
    assert manifest(out)[0]["files"][0]["path"] == "L2-a-red-fox-in-snow-0.png"
    default = cli("batch", WAN, prompts, "--out", tmp_path / "d", "--simulate")
    assert default.code == 0
    assert (tmp_path / "d" / "0000-a-red-fox-in-snow-0.png").is_file()


def interrupt_a_batch(sim: SimProcess, key_file: Path, args: list[str]) -> tuple[int, str, str]:
    process = cli_process(*args, "--base-url", sim.url, "--api-key-file", key_file)
    errors = lines_of(process.stderr)
    try:
        wait_for(errors, "runcomfy batch: ")
        deadline = time.monotonic() + 20
        while [job["state"] for job in sim.ledger()["jobs"]].count("in_progress") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)  # stderr is the reader thread's: no communicate()
    finally:
        if process.poll() is None:  # a failed check: leave no process behind
            process.kill()
            process.wait()
    assert process.stdout is not None
    with process.stdout:
        out = process.stdout.read()
    err = []
    while (line := errors.get(timeout=30)) != "":
        err.append(line)
    return process.returncode, out, "".join(err)


def test_after_ctrl_c_the_summary_counts_cancelled_and_still_running(
    key_file: Path, tmp_path: Path
) -> None:
    sim = SimProcess("--time-scale", "3", "--concurrency", "1", key=CANARY)
    try:
        prompts = write(tmp_path / "p.txt", *(f"prompt {n}" for n in range(4)))
        out = tmp_path / "out"
        code, stdout, err = interrupt_a_batch(
            sim, key_file, ["batch", WAN, str(prompts), "--out", str(out)]
        )
        assert code == 130
        assert "4 inputs: 0 succeeded, 0 failed, 3 cancelled, 0 unknown, 1 still running" in stdout
        running = [row for row in manifest(out) if row["state"] == "running"]
        assert len(running) == 1
        job = next(j for j in sim.ledger()["jobs"] if j["state"] == "in_progress")
        assert running[0]["request_id"] == job["request_id"]
        assert "1 running ones go on (billed)" in err
        assert job["request_id"] not in err + stdout  # a pointer, not a dump of ids
        assert [row["state"] for row in manifest(out)].count("cancelled") == 3
    finally:
        sim.stop()


def test_a_resumed_simulate_batch_whose_simulator_is_gone_ends_well(
    key_file: Path, tmp_path: Path, cli: Any
) -> None:
    sim = SimProcess("--time-scale", "3", "--concurrency", "1", key=CANARY)
    prompts = write(tmp_path / "p.txt", *(f"prompt {n}" for n in range(3)))
    out = tmp_path / "out"
    try:  # an earlier run whose requests now live in a simulator that will be gone
        interrupt_a_batch(sim, key_file, ["batch", WAN, str(prompts), "--out", str(out)])
    finally:
        sim.stop()
    done = cli("batch", WAN, prompts, "--out", out, "--simulate")
    assert done.code == 0, done.out + done.err
    assert re.search(r"--simulate: \d+ requests of an earlier run were in its simulator", done.err)
    assert "3 inputs: 3 succeeded" in done.out
    rows = manifest(out)
    assert [row["state"] for row in rows] == ["succeeded"] * 3
    assert len({row["request_id"] for row in rows}) == 3


def test_simulated_runs_get_request_ids_unique_across_processes(tmp_path: Path) -> None:
    ids = []
    for prompt in ("a fox", "a wolf"):
        process = cli_process("run", WAN, "-i", f"prompt={prompt}", "--simulate", "--out", tmp_path)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        ids.append(re.search(r"submitted request (\S+)", err)[1])  # type: ignore[index]
    assert ids[0] != ids[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{rid}-0.png" for rid in ids)
