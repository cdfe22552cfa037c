"""The quick-start notebook executes top to bottom (small size, CPU) and shows its results."""

import os

import pytest

nbclient = pytest.importorskip(
    "nbclient", reason="nbclient is not installed: pip install -e '.[test]' runs this test"
)
nbformat = pytest.importorskip("nbformat", reason="nbformat comes with nbclient ('.[test]')")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "quickstart.ipynb")


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


@pytest.mark.slow
def test_quickstart_notebook_runs_and_shows_the_metrics_table_and_figures(monkeypatch):
    # The kernel inherits the environment: the small size, the CPU, and the checkout on the
    # path (so that the install cell finds rsnn_jax and installs nothing).
    monkeypatch.setenv("RSNN_QUICKSTART_SMALL", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", ROOT if not path else f"{ROOT}{os.pathsep}{path}")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": os.path.join(ROOT, "notebooks")}},
    )
    client.execute()

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert "devices:" in text and "small run: True" in text
    assert "Successfully installed" not in text  # rsnn_jax came from the checkout
    markdown = [
        out.data["text/markdown"]
        for out in outputs
        if out.output_type == "display_data" and "text/markdown" in out.data
    ]
    tables = [m for m in markdown if m.startswith("| model |")]
    assert len(tables) == 1
    rows = [line.split("|")[1].strip() for line in tables[0].splitlines()[2:]]
    assert rows == ["untrained", "mle", "mle_psth_nc", "target (ceiling)"]
    for line in tables[0].splitlines()[2:]:
        values = [cell.strip() for cell in line.split("|")[2:-1]]
        assert len(values) == 5 and all(v.lstrip("-").replace(".", "", 1).isdigit() for v in values)
    images = [
        out for out in outputs if out.output_type == "display_data" and "image/png" in out.data
    ]
    assert len(images) == 6  # raster, PSTH and noise correlations for each objective
    assert all(len(image.data["image/png"]) > 1000 for image in images)


def test_the_install_cell_has_no_placeholder_to_fill_in():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    install = notebook.cells[1].source
    assert 'find_spec("rsnn_jax")' in install
    for text in ("YOUR-ORG", "PLACEHOLDER", "REPO_URL"):
        assert text not in install
