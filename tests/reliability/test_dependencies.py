"""Dependencies: the security floor of aiohttp is declared, and is what is installed."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"
# The floor pyproject.toml declares for aiohttp (tests/conftest.py: "We keep aiohttp at its
# security-fixed versions"); raising it is fine, lowering it is what this test stops.
FLOOR = Version("3.14.3")


def declared() -> dict[str, Requirement]:
    with PYPROJECT.open("rb") as file:
        project = tomllib.load(file)["project"]
    return {req.name.lower(): req for req in map(Requirement, project["dependencies"])}


def test_pyproject_requires_aiohttp_at_or_above_the_security_floor() -> None:
    aiohttp = declared()["aiohttp"]
    spec = aiohttp.specifier
    assert FLOOR in spec
    assert Version("3.14.2") not in spec  # nothing older is allowed
    assert Version("3.9.0") not in spec
    assert not aiohttp.marker  # on every platform and Python


def test_the_installed_aiohttp_meets_the_declared_floor() -> None:
    installed = Version(importlib.metadata.version("aiohttp"))
    assert installed in declared()["aiohttp"].specifier
    assert installed >= FLOOR


def test_every_runtime_dependency_has_a_lower_bound() -> None:
    for name, requirement in declared().items():
        assert any(s.operator in (">=", "==", "~=") for s in requirement.specifier), name
