"""Every example under examples/ (jupytext percent-format notebooks, plain Python) runs."""

import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.py"))


def test_the_quickstart_is_an_example():
    assert "quickstart.py" in [path.name for path in EXAMPLES]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_runs_a_sweep_and_writes_its_figures(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example writes results/ and its figures where it runs
    runpy.run_path(str(path), run_name="__main__")
    assert list(tmp_path.glob("results/*/_manifest.json")), "no complete sweep was written"
    for saved in re.findall(r"\.savefig\(\"([^\"]+)\"", path.read_text()):
        assert (tmp_path / saved).stat().st_size > 0, saved


def notebook(path: Path):
    """A jupytext percent-format file as an nbformat notebook: a cell per `# %%` marker."""
    nbformat = pytest.importorskip("nbformat")
    cells = []
    for chunk in re.split(r"^# %%", path.read_text(), flags=re.MULTILINE)[1:]:
        marker, _, body = chunk.partition("\n")
        if "[markdown]" in marker:
            cells.append(nbformat.v4.new_markdown_cell(
                re.sub(r"^# ?", "", body.strip(), flags=re.MULTILINE)))
        else:
            cells.append(nbformat.v4.new_code_cell(body.strip()))
    return nbformat.v4.new_notebook(cells=cells)


def test_the_quickstart_in_jupyter_shows_its_figure_and_no_widget_warning(tmp_path):
    """Executed by a real kernel: the figure cell's output is an image (no `%matplotlib inline`
    needed), and tqdm does not warn "IProgress not found" (no ipywidgets here)."""
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    path = next(path for path in EXAMPLES if path.name == "quickstart.py")
    executed = notebook(path)
    nbclient.NotebookClient(executed, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in executed.cells if cell.cell_type == "code"
               for output in cell.outputs]
    (figure,) = [cell for cell in executed.cells if cell.cell_type == "code"
                 and cell.source.endswith('figures["wd_speed"]')]
    assert [output.data["image/png"][:8] for output in figure.outputs] == ["iVBORw0K"]  # PNG
    streams = "".join(output.get("text", "") for output in outputs)
    assert "IProgress" not in streams and "Warning" not in streams


def test_progress_in_a_kernel_without_ipywidgets_is_silent():
    """tqdm.auto, imported in a Jupyter kernel that lacks ipywidgets, warns "IProgress not
    found"; the progress bar is drawn only on a terminal, so grokjax uses the plain one."""
    code = """
import sys, types, warnings
kernel = types.SimpleNamespace(get_ipython=lambda: types.SimpleNamespace())
sys.modules.update({"ipykernel.zmqshell": types.ModuleType("zmqshell"), "ipywidgets": None,
                    "IPython": kernel})
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from grokjax.progress import Progress
    Progress("sweep", show=True).close()
print([str(w.message) for w in caught])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]", result.stdout
