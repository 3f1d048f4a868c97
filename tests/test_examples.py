"""Every example under examples/ (jupytext percent-format notebooks, plain Python) runs."""

import re
import runpy
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
