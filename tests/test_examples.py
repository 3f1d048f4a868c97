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
