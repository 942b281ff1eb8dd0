"""The public surface: `runcomfy_async` and `runcomfy_async.models`, complete, sorted, key-safe."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
import types
import typing

import pytest

import runcomfy_async as rc
from runcomfy_async import models

CANARY = "canary-XYZ-1c7e9a"

# Implementation modules whose `__all__` is the public API, re-exported from the package.
PUBLIC_PRIVATE_MODULES = [
    "runcomfy_async._client",
    "runcomfy_async._request",
    "runcomfy_async._config",
    "runcomfy_async._cost",
    "runcomfy_async._sink",
    "runcomfy_async._errors",
    "runcomfy_async._batch",
    "runcomfy_async._files",
    "runcomfy_async._items",
    "runcomfy_async._inputs",
    "runcomfy_async._journal",
    "runcomfy_async._policy",
    "runcomfy_async._retry",
    "runcomfy_async._sync",
    "runcomfy_async._telemetry",
    "runcomfy_async._wire",
]


def isort_key(name: str) -> tuple[int, str]:
    """The order the package's `__all__` uses (ruff RUF022, isort style): CONSTANTS, then
    Classes, then everything else, each group in plain (case-sensitive) order."""
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


@pytest.mark.parametrize("module", [rc, models], ids=["runcomfy_async", "models"])
def test_all_is_sorted_without_repeats(module: types.ModuleType) -> None:
    names = list(module.__all__)
    assert names == sorted(names, key=isort_key)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("module", [rc, models], ids=["runcomfy_async", "models"])
def test_every_exported_name_exists_and_none_is_private(module: types.ModuleType) -> None:
    for name in module.__all__:
        assert hasattr(module, name), name
        assert not name.startswith("_") or (name.startswith("__") and name.endswith("__")), name


def test_package_exports_every_public_name_of_its_modules() -> None:
    expected = {"__version__", "models"}
    for dotted in PUBLIC_PRIVATE_MODULES:
        module = importlib.import_module(dotted)
        for name in module.__all__:
            assert getattr(rc, name) is getattr(module, name), f"{dotted}.{name}"
        expected |= set(module.__all__)
    assert set(rc.__all__) == expected


def test_every_type_a_public_method_returns_is_exported() -> None:
    # A user must be able to name (import, annotate, isinstance) whatever they get back.
    exported = {getattr(rc, name) for name in rc.__all__}
    seen: set[type] = set()
    for owner in (rc.Client, rc.Request):
        for name, method in inspect.getmembers(owner, inspect.isfunction):  # bases too
            if name.startswith("_") or not inspect.isfunction(method):
                continue
            returned = typing.get_type_hints(method).get("return")
            for cls in (returned, *typing.get_args(returned)):
                if isinstance(cls, type) and cls.__module__.startswith("runcomfy_async"):
                    seen.add(cls)
    for struct in (rc.Result, rc.Status, rc.CancelOutcome):
        for hint in typing.get_type_hints(struct).values():
            for cls in (hint, *typing.get_args(hint)):
                if isinstance(cls, type) and cls.__module__.startswith("runcomfy_async"):
                    seen.add(cls)
    assert {rc.Request, rc.Status, rc.Result, rc.CancelOutcome, rc.ModelInfo} <= seen
    assert {rc.State, rc.Output} <= seen
    assert seen <= exported


def test_every_error_class_is_exported_except_the_internal_not_ready() -> None:
    errors_module = importlib.import_module("runcomfy_async._errors")
    defined = {
        name
        for name, value in vars(errors_module).items()
        if inspect.isclass(value) and issubclass(value, rc.RunComfyError)
    }
    assert defined - set(rc.__all__) == {"ResultNotReadyError"}
    assert issubclass(errors_module.ResultNotReadyError, rc.BadRequestError)


def test_models_exports_every_typed_input() -> None:
    found = {}
    for info in pkgutil.iter_modules(models.__path__):
        module = importlib.import_module(f"{models.__name__}.{info.name}")
        assert module.__all__ == sorted(module.__all__, key=isort_key), info.name
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, rc.ModelInput)
                and value is not rc.ModelInput
                and value.__module__ == module.__name__
            ):
                found[name] = value
    assert found
    assert set(models.__all__) == set(found)
    for name, cls in found.items():
        assert getattr(models, name) is cls
        assert cls.model_id.count("/") >= 1


def test_version_is_a_string() -> None:
    assert isinstance(rc.__version__, str)
    assert rc.__version__.count(".") >= 2


# ------------------------------------------------------------------ the key never shows


def test_client_repr_hides_the_key() -> None:
    client = rc.Client(api_key=CANARY, base_url="https://model-api.runcomfy.net")
    text = repr(client) + str(client)
    assert CANARY not in text
    assert "https://model-api.runcomfy.net" in repr(client)


def test_client_repr_hides_a_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNCOMFY_API_KEY", CANARY)
    client = rc.Client()
    assert CANARY not in repr(client)


def test_the_key_cannot_be_pickled_along_with_a_client() -> None:
    client = rc.Client(api_key=CANARY, base_url="https://model-api.runcomfy.net")
    with pytest.raises(TypeError):
        pickle.dumps(client._runtime.transport._key)


def test_configuration_errors_do_not_echo_a_bad_key() -> None:
    with pytest.raises(rc.ConfigurationError) as caught:
        rc.Client(api_key=CANARY + " \x00oops", base_url="https://model-api.runcomfy.net")
    assert CANARY not in str(caught.value)


async def test_request_repr_shows_ids_only() -> None:
    async with rc.Client(api_key=CANARY, base_url="https://model-api.runcomfy.net") as client:
        request = rc.Request("r1", "a/b", client)
        assert repr(request) == "Request(request_id='r1', model_id='a/b')"
        assert request == rc.Request("r1", "a/b", client)
        assert hash(request) == hash(rc.Request("r1", "a/b", client))
