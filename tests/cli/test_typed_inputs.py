"""`-i NAME=VALUE` typed by the model's schema, `-i NAME=@PATH`, and the words of a refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.cli.conftest import RUNWAY, WAN, SimProcess

FLUX_LORA = "blackforestlabs/flux-1-dev/lora/text-to-image"


def sent(sim: SimProcess, request_id: str) -> dict[str, Any]:
    [job] = [job for job in sim.ledger()["jobs"] if job["request_id"] == request_id]
    inputs: dict[str, Any] = job["inputs"]
    return inputs


def test_a_string_field_keeps_what_was_typed_and_numbers_follow_the_schema(
    cli: Any, sim: SimProcess, key_file: Path
) -> None:
    at = ["--base-url", sim.url, "--api-key-file", key_file]
    done = cli("submit", WAN, "-i", "prompt=1984", "-i", "seed=7", "-i", "prompt_extend=false", *at)
    assert done.code == 0, done.err
    assert sent(sim, done.out.strip()) == {"prompt": "1984", "seed": 7, "prompt_extend": False}
    lora = cli(
        "submit",
        FLUX_LORA,
        "-i",
        "prompt=true",
        "-i",
        "guidance_scale=4",
        "-i",
        'loras=[{"path": "https://example.com/a.safetensors", "scale": 0.5}]',
        *at,
    )
    assert lora.code == 0, lora.err
    assert sent(sim, lora.out.strip()) == {
        "prompt": "true",
        "guidance_scale": 4,
        "loras": [{"path": "https://example.com/a.safetensors", "scale": 0.5}],
    }


def test_a_value_that_is_not_the_fields_type_is_refused_before_any_submit(
    cli: Any, sim: SimProcess, key_file: Path
) -> None:
    before = sim.submits()
    at = ["--base-url", sim.url, "--api-key-file", key_file]
    done = cli("submit", WAN, "-i", "prompt=x", "-i", "seed=seven", *at)
    assert (done.code, done.err) == (2, "runcomfy: error: -i seed=seven: seed takes an integer\n")
    flag = cli("submit", WAN, "-i", "prompt=x", "-i", "prompt_extend=maybe", *at)
    assert "prompt_extend takes true or false" in flag.err
    assert sim.submits() == before


def test_at_path_reads_a_text_field_from_a_file_and_double_at_is_a_literal_at(
    cli: Any, sim: SimProcess, key_file: Path, tmp_path: Path
) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("a red fox,\nin the snow\n", encoding="utf-8")
    at = ["--base-url", sim.url, "--api-key-file", key_file]
    done = cli("submit", WAN, "-i", f"prompt=@{prompt}", "-i", "negative_prompt=@@home", *at)
    assert done.code == 0, done.err
    assert sent(sim, done.out.strip()) == {
        "prompt": "a red fox,\nin the snow",
        "negative_prompt": "@home",
    }
    missing = cli("submit", WAN, "-i", f"prompt=@{tmp_path / 'nope.txt'}", *at)
    assert missing.code == 2
    assert f"-i prompt=@{tmp_path / 'nope.txt'}: cannot read it: No such file" in missing.err


def test_a_wrong_field_name_gets_the_right_one(cli: Any) -> None:
    runway = cli("submit", RUNWAY, "-i", "prompt_text=waves", "--simulate")
    assert runway.code == 2
    assert runway.err == (
        f"runcomfy: error: {RUNWAY}: unknown field prompt_text (did you mean promptText?)\n"
    )
    lora = cli("submit", FLUX_LORA, "-i", "promt=a fox", "--simulate")  # the catalog's check
    assert lora.err == (
        f"runcomfy: error: {FLUX_LORA}: unknown field promt (did you mean prompt?)\n"
    )


def test_an_enum_error_lists_the_allowed_values(cli: Any) -> None:
    done = cli("submit", RUNWAY, "-i", "promptText=x", "-i", "ratio=16:9", "--simulate")
    assert done.code == 2
    assert done.err == (
        f'runcomfy: error: {RUNWAY}: ratio: "16:9" is not one of "1280:768", "768:1280"\n'
    )
