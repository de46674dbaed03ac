"""Every package documents its public API in its module docstring: a new export without a line there fails.

For a package with `__all__`, every name in it; for a single module without one, every public function and
class it defines; for `mexjax.attacks`, its public subpackages. A name counts as documented when the
docstring holds it as a whole word (`load` is not documented by `load_test`)."""

import importlib
import inspect
import pkgutil
import re

import pytest

PACKAGES = (
    "mexjax.data",
    "mexjax.exits",
    "mexjax.nets",
    "mexjax.train",
    "mexjax.captioning",
    "mexjax.defenses",
    "mexjax.attacks.steal",
    "mexjax.attacks.slowdown",
    "mexjax.serve",
)
MODULES = ("mexjax.metrics", "mexjax.results", "mexjax.checkpoint", "mexjax.oracle", "mexjax.victim_training")


def _undocumented(module, names) -> list[str]:
    doc = module.__doc__ or ""
    return [name for name in names if not re.search(rf"(?<!\w){re.escape(name)}(?!\w)", doc)]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_export_of_a_package_is_in_its_docstring(name):
    module = importlib.import_module(name)
    assert module.__all__, f"{name} has an empty __all__"
    missing = _undocumented(module, module.__all__)
    assert not missing, f"{name}.__all__ names missing from its module docstring: {missing}"


@pytest.mark.parametrize("name", MODULES)
def test_every_public_definition_of_a_module_is_in_its_docstring(name):
    module = importlib.import_module(name)
    public = getattr(module, "__all__", None) or [
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == name
    ]
    assert public, f"{name} defines nothing public"
    missing = _undocumented(module, public)
    assert not missing, f"public names of {name} missing from its module docstring: {missing}"


def test_the_attacks_package_names_its_subpackages():
    attacks = importlib.import_module("mexjax.attacks")
    found = pkgutil.iter_modules(attacks.__path__)
    subpackages = [info.name for info in found if info.ispkg and not info.name.startswith("_")]
    assert sorted(subpackages) == ["slowdown", "steal"]
    assert not _undocumented(attacks, subpackages)


def test_the_check_sees_a_missing_name():
    module = type("FakeModule", (), {"__doc__": "load_test(url) and loader"})
    assert _undocumented(module, ["load", "load_test"]) == ["load"]
