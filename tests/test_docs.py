"""docs/api.md lists real names, and every public name of every module; docs/index.md links
resolve."""

import importlib
import inspect
import os
import pkgutil
import re

import pytest

import rsnn_jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API = os.path.join(ROOT, "docs", "api.md")


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _documented_names() -> set[str]:
    """Backticked dotted names such as `rsnn_jax.network.simulate` (a call's arguments
    dropped: `rsnn_jax.network.simulate(params, ...)` documents rsnn_jax.network.simulate)."""
    return set(re.findall(r"`(rsnn_jax(?:\.\w+)+)", _read(API)))


def _resolve(dotted: str):
    """Imports the longest module prefix of ``dotted`` and getattrs the rest."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)  # AttributeError names what is missing
        return obj
    raise ImportError(dotted)


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(rsnn_jax.__path__, "rsnn_jax."):
        names.append(info.name)
    return sorted(names)


def _public(module_name: str) -> list[str]:
    """Functions and classes (and jax-wrapped functions) defined in the module, not private."""
    module = importlib.import_module(module_name)
    names = []
    for name, obj in vars(module).items():
        if name.startswith("_") or inspect.ismodule(obj) or not callable(obj):
            continue
        defined = getattr(obj, "__module__", None)
        wrapped = getattr(obj, "fun", None) or getattr(obj, "__wrapped__", None)
        if defined is None and wrapped is not None:
            defined = getattr(wrapped, "__module__", None)
        if defined == module_name:
            names.append(name)
    return names


def test_every_documented_name_exists():
    missing = []
    for dotted in sorted(_documented_names()):
        try:
            _resolve(dotted)
        except (ImportError, AttributeError) as error:
            missing.append(f"{dotted}: {error}")
    assert not missing, "docs/api.md names that do not exist:\n" + "\n".join(missing)


def test_every_module_and_public_name_is_documented():
    documented = _documented_names()
    text = _read(API)
    undocumented = []
    for module_name in _modules():
        if f"`{module_name}`" not in text:
            undocumented.append(f"module {module_name}")
        undocumented += [
            f"{module_name}.{name}"
            for name in _public(module_name)
            if f"{module_name}.{name}" not in documented
        ]
    assert not undocumented, "missing from docs/api.md:\n" + "\n".join(undocumented)


def test_the_name_parser_and_resolver_catch_mistakes():
    assert "rsnn_jax.network.simulate" in _documented_names()
    with pytest.raises(AttributeError):
        _resolve("rsnn_jax.network.no_such_function")
    assert "simulate" in _public("rsnn_jax.network")
    assert "straight_through_bernoulli" in _public("rsnn_jax.spikes")  # a jax.custom_jvp


@pytest.mark.parametrize("page", ["index.md", "api.md", "custom_statistics.md"])
def test_relative_links_resolve(page):
    """Markdown links to files of the repository point to files that exist (docs/results.md
    may be written later by the study, so it is allowed to be missing)."""
    folder = os.path.join(ROOT, "docs")
    broken = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", _read(os.path.join(folder, page))):
        if "://" in target or target.endswith("results.md"):
            continue
        if not os.path.exists(os.path.normpath(os.path.join(folder, target))):
            broken.append(target)
    assert not broken, f"docs/{page}: broken links {broken}"
