"""Generated model modules: the seeds come out as the hand-written files (prose aside), and
every catalog model gives a module that ruff and mypy --strict accept and that checks inputs
as the schema validator does."""

from __future__ import annotations

import difflib
import subprocess
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import runcomfy_async as rc
from runcomfy_async import _inputs, models
from runcomfy_async._cli.codegen import (
    class_name_for,
    generate_model_module,
    module_name_for,
    write_model_module,
)
from runcomfy_async._schema import build_validator
from runcomfy_async._wire import ModelBody, ModelInfo, model_info_from
from runcomfy_async.simulator import RUNWAY_IMAGE_TO_VIDEO, WAN_TEXT_TO_IMAGE
from runcomfy_async.simulator._catalog import build_catalog
from runcomfy_async.simulator._catalog_extra import catalog_models
from tests.simulator.test_catalog_models import INVALID, VALID

ROOT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).parent / "ruff"
CATALOG = build_catalog(catalog_models())
RUNWAY_CLASS = "RunwayGen3TurboImageToVideo"  # the hand-written name drops "Alpha"
IMAGE = "https://example.com/fox.png"


def info_of(model_id: str) -> ModelInfo:
    """The catalog entry as the client reads it from `GET /v1/models/{id}`."""
    body = msgspec.json.decode(msgspec.json.encode(CATALOG[model_id].to_json()), type=ModelBody)
    return model_info_from(body, model_id)


def generate(model_id: str, **options: Any) -> str:
    name = RUNWAY_CLASS if model_id == RUNWAY_IMAGE_TO_VIDEO else None
    return generate_model_module(info_of(model_id), class_name=name, **options)


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Import generated source as a module of runcomfy_async.models, then forget it (and put
    the hand-written inputs back in the registry its class joined)."""
    saved = dict(_inputs.TYPED)

    def _load(source: str) -> types.ModuleType:
        name = f"runcomfy_async.models._generated_{len(sys.modules)}"
        module = types.ModuleType(name)
        module.__package__ = "runcomfy_async.models"
        monkeypatch.setitem(sys.modules, name, module)  # msgspec resolves annotations here
        exec(compile(source, f"<{name}>", "exec"), module.__dict__)
        return module

    yield _load
    _inputs.TYPED.clear()
    _inputs.TYPED.update(saved)


@pytest.mark.parametrize(
    ("model_id", "class_name"),
    [
        (WAN_TEXT_TO_IMAGE, "Wan22TextToImage"),
        (RUNWAY_IMAGE_TO_VIDEO, "RunwayGen3AlphaTurboImageToVideo"),
        ("bytedance/seedream-4/edit", "Seedream4Edit"),
        ("kling/kling-2-1/master/text-to-video", "Kling21MasterTextToVideo"),
        ("blackforestlabs/flux.1-dev/text-to-image", "Flux1DevTextToImage"),
        ("acme/3d/mesh", "Model3dMesh"),
    ],
)
def test_class_names_come_from_the_model_id(model_id: str, class_name: str) -> None:
    assert class_name_for(model_id) == class_name


def test_module_names_are_the_class_names_in_snake_case() -> None:
    assert module_name_for("Wan22TextToImage") == "wan22_text_to_image"
    assert module_name_for(RUNWAY_CLASS) == "runway_gen3_turbo_image_to_video"
    assert module_name_for("Seedream4Edit") == "seedream4_edit"


def changed_lines(model_id: str, hand_file: str) -> tuple[list[str], list[str]]:
    hand = (ROOT / "runcomfy_async" / "models" / hand_file).read_text().splitlines()
    made = generate(model_id).splitlines()
    diff = list(difflib.ndiff(hand, made))
    return [d[2:] for d in diff if d[0] == "-"], [d[2:] for d in diff if d[0] == "+"]


def test_regenerated_wan_differs_from_the_hand_file_only_in_its_class_docstring() -> None:
    removed, added = changed_lines(WAN_TEXT_TO_IMAGE, "wan22_text_to_image.py")
    assert removed == [
        '    """Wan 2.2 text-to-image. Unset fields take RunComfy\'s defaults (16:9, magic prompt'
        ' on)."""'
    ]
    assert added == [
        '    """Wan 2.2 Text to Image. Unset fields take RunComfy\'s defaults',
        '    (aspect_ratio="1440:810 (16:9)", prompt_extend=True)."""',
    ]


def test_regenerated_runway_differs_from_the_hand_file_only_in_prose() -> None:
    removed, added = changed_lines(RUNWAY_IMAGE_TO_VIDEO, "runway_gen3_turbo_image_to_video.py")
    assert removed == [
        '        "(width and height < 8000 px, aspect ratio 1:2 to 2:1, file < 16 MB)",',
        '    """Runway Gen-3 Alpha Turbo image-to-video. Unset fields take RunComfy\'s defaults',
        '    (1280:768, 5 seconds)."""',
    ]
    assert added == [
        '        "(width < 8000 px, height < 8000 px, width/height > 0.5, width/height < 2,'
        ' file < 16 MB)",',
        '    """Runway Gen-3 Alpha Turbo Image to Video. Unset fields take RunComfy\'s defaults',
        '    (ratio="1280:768", duration=5)."""',
    ]


SEED_CASES: list[dict[str, Any]] = [
    {"prompt": "fox"},
    {"prompt": "x" * 801},
    {"prompt": "fox", "aspect_ratio": "16:9"},
    {"prompt": "fox", "aspect_ratio": "1024:1024 (1:1)", "seed": -3, "prompt_extend": False},
    {"prompt": "fox", "seed": 1.0},
    {"prompt": "fox", "negativePrompt": "x"},
    {"promptText": "fox", "promptImage": IMAGE},
    {"promptText": "fox", "promptImage": IMAGE, "ratio": "768:1280", "duration": 10, "seed": 0},
    {"promptText": "fox", "promptImage": IMAGE, "duration": 5.0},
    {"promptText": "fox", "promptImage": IMAGE, "seed": 4294967296},
    {"promptText": "fox", "promptImage": "http://example.com/fox.png"},
    {"promptText": "fox", "promptImage": "data:image/png;base64,AA=="},
    {"promptText": "fox", "promptImage": IMAGE + "\n"},
    {"promptText": "x" * 513, "promptImage": IMAGE},
    {"prompt_text": "fox", "promptImage": IMAGE},
]


def outcome(cls: type[rc.ModelInput], data: dict[str, Any]) -> str | None:
    """None if `data` is accepted, else the field named by the refusal."""
    try:
        cls.from_dict(data)
    except rc.InvalidInputError as error:
        return error.field or "?"
    return None


@pytest.mark.parametrize(
    ("model_id", "hand"),
    [
        (WAN_TEXT_TO_IMAGE, models.Wan22TextToImage),
        (RUNWAY_IMAGE_TO_VIDEO, models.RunwayGen3TurboImageToVideo),
    ],
)
def test_regenerated_seeds_check_inputs_like_the_hand_written_ones(
    model_id: str, hand: type[rc.ModelInput], load: Any
) -> None:
    module = load(generate(model_id))
    made = getattr(module, hand.__name__)
    assert made.model_id == hand.model_id
    assert made.rule_hints == hand.rule_hints
    assert module.__all__ == sys.modules[hand.__module__].__all__
    fields = [(f.name, f.encode_name, f.required) for f in msgspec.structs.fields(made)]
    assert fields == [(f.name, f.encode_name, f.required) for f in msgspec.structs.fields(hand)]
    for data in SEED_CASES:
        assert outcome(made, data) == outcome(hand, data), data


def test_typed_inputs_take_only_urls_runcomfy_can_fetch(load: Any) -> None:
    """A generated class, like the hand-written ones, takes https or data: only; plain http to
    the simulator's loopback files is for the dict validator of a simulator's client."""
    made = getattr(load(generate(RUNWAY_IMAGE_TO_VIDEO)), RUNWAY_CLASS)
    local = {"promptText": "fox", "promptImage": "http://127.0.0.1:8000/files/r/0.png"}
    assert outcome(made, local) == "prompt_image"
    assert outcome(models.RunwayGen3TurboImageToVideo, local) == "prompt_image"
    schema = info_of(RUNWAY_IMAGE_TO_VIDEO).input_schema
    with pytest.raises(rc.InvalidInputError):
        build_validator(RUNWAY_IMAGE_TO_VIDEO, schema).validate(local)
    build_validator(RUNWAY_IMAGE_TO_VIDEO, schema, allow_loopback=True).validate(local)


def ruff(*args: str, source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUFF), *args, "--stdin-filename", "runcomfy_async/models/generated.py", "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.skipif(not RUFF.exists(), reason="ruff is not installed beside this Python")
@pytest.mark.parametrize("model_id", list(catalog_models()))
def test_every_generated_module_is_formatted_and_lint_clean(model_id: str) -> None:
    source = generate(model_id)
    formatted = ruff("format", "--check", source=source)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    linted = ruff("check", "--no-fix", source=source)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_every_generated_module_passes_mypy_strict(tmp_path: Path) -> None:
    for model_id in catalog_models():
        source = generate(model_id, in_package=False)
        assert "from runcomfy_async import ModelInput" in source
        (tmp_path / f"{module_name_for(class_name_for(model_id))}.py").write_text(source)
    # In a process of its own: mypy raises the interpreter's recursion limit for good.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(Path(tempfile.gettempdir()) / "runcomfy-async-codegen-test-mypy-cache"),
            "--no-error-summary",
            "--show-error-codes",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    status, stdout, stderr = done.returncode, done.stdout, done.stderr
    assert (status, stdout.strip(), stderr.strip()) == (0, "", "")


@pytest.mark.parametrize("model_id", list(catalog_models()))
def test_a_generated_input_agrees_with_the_schema_validator(model_id: str, load: Any) -> None:
    module = load(generate(model_id))
    typed = _main_class(module, model_id)
    wire = {f.name: f.encode_name for f in msgspec.structs.fields(typed)}
    validator = build_validator(model_id, info_of(model_id).input_schema)
    for good in VALID[model_id]:
        validator.validate(good)
        typed.from_dict(good)
    for bad, field, _ in INVALID[model_id]:
        with pytest.raises(rc.InvalidInputError) as caught:
            typed.from_dict(bad)
        assert wire[caught.value.field or ""] == field.split(".")[0].split("[")[0]


def _main_class(module: types.ModuleType, model_id: str) -> type[rc.ModelInput]:
    (found,) = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and getattr(value, "model_id", None) == model_id
    ]
    return found


ODD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["class", "modelId"],
    "properties": {
        "class": {"type": "string"},
        "modelId": {"type": "string"},
        "model_id": {"type": "integer"},
        "3d-mode": {"type": "boolean"},
        "imageURL": {"type": "string", "format": "image_uri"},
        "mode": {"type": ["string", "integer", "null"]},
        "strength": {"type": "float", "enum": [0.5, 1.5]},
        "anything": {"oneOf": [{"type": "string"}]},
        "extra": {"type": "object"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 5},
        "very_long_field_name_for_a_constrained_integer_value": {
            "type": "integer",
            "minimum": 0,
            "maximum": 4294967295,
            "multipleOf": 2,
        },
    },
}


def test_odd_field_names_and_types_still_give_a_clean_working_module(load: Any) -> None:
    info = ModelInfo(model_id="acme/odd/model", input_schema=ODD_SCHEMA)
    source = generate_model_module(info)
    if RUFF.exists():
        assert ruff("format", "--check", source=source).returncode == 0
        linted = ruff("check", "--no-fix", source=source)
        assert linted.returncode == 0, linted.stdout
    assert "# Not checked here: field strength: must be one of 0.5, 1.5 (no Literal" in source
    assert "# Not checked here: field anything: 'oneOf' not checked" in source
    typed = load(source).OddModel
    wire = {f.name: f.encode_name for f in msgspec.structs.fields(typed)}
    assert wire["class_"] == "class"
    assert wire["model_id_"] == "modelId"
    assert wire["model_id__"] == "model_id"
    assert wire["field_3d_mode"] == "3d-mode"
    assert wire["image_url"] == "imageURL"
    data = {"class": "a", "modelId": "b", "3d-mode": True, "mode": None, "tags": ["x"]}
    assert typed.from_dict(data).class_ == "a"
    assert outcome(typed, {**data, "mode": 1.5}) == "mode"
    assert outcome(typed, {**data, "very_long_field_name_for_a_constrained_integer_value": 3})


def test_a_schema_without_fields_cannot_be_generated() -> None:
    for schema in (None, {}, {"type": "object", "properties": {}}):
        with pytest.raises(ValueError, match="names no fields"):
            generate_model_module(ModelInfo(model_id="acme/none/model", input_schema=schema))


def test_writing_a_module_never_overwrites_by_accident(tmp_path: Path) -> None:
    path = tmp_path / "wan22_text_to_image.py"
    write_model_module("first\n", path, overwrite=False)
    with pytest.raises(FileExistsError):
        write_model_module("second\n", path, overwrite=False)
    assert path.read_text() == "first\n"
    write_model_module("second\n", path, overwrite=True)
    assert path.read_text() == "second\n"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
