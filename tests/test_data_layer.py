"""rsnn_jax.data is a plain NumPy / h5py leaf: no JAX, Flax, Optax, no model code, no flags."""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "rsnn_jax", "data")
FORBIDDEN = ("jax", "jaxlib", "flax", "optax", "chex", "absl")


def _imports(path: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, inside functions too."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against rsnn_jax.data
                found.append((node.lineno, "rsnn_jax.data." + (node.module or "")))
            else:
                found.append((node.lineno, node.module))
    return found


def _violations(path: str) -> list[str]:
    bad = []
    for line, name in _imports(path):
        top = name.split(".")[0]
        outside = top == "rsnn_jax" and not (name + ".").startswith("rsnn_jax.data.")
        if top in FORBIDDEN or outside:
            bad.append(f"{os.path.relpath(path, ROOT)}:{line}: imports {name}")
    return bad


def test_no_data_module_imports_jax_the_model_or_flags():
    files = sorted(f for f in os.listdir(DATA) if f.endswith(".py"))
    assert "recording.py" in files
    bad = [v for f in files for v in _violations(os.path.join(DATA, f))]
    assert not bad, "rsnn_jax/data must stay a NumPy/h5py leaf:\n" + "\n".join(bad)


@pytest.mark.parametrize("statement", ["import jax.numpy as jnp", "from rsnn_jax import model"])
def test_the_check_catches_a_model_import(tmp_path, statement):
    module = tmp_path / "bad.py"
    module.write_text(f"def f():\n    {statement}\n")
    assert _violations(str(module))


def test_importing_every_data_module_loads_no_jax():
    code = (
        "import importlib, pkgutil, sys\n"
        "import rsnn_jax.data as data\n"
        "for info in pkgutil.walk_packages(data.__path__, 'rsnn_jax.data.'):\n"
        "    importlib.import_module(info.name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout
