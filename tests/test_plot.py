"""Figures, on the synthetic tables and fits of test_fit.py."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from test_fit import (
    boundary_runs,
    grok_law_runs,
    irrep_runs,
    lr_runs,
    synthetic_curves,
    wd_runs,
    width_runs,
)

from grokjax.analysis.boundary import boundary_law, generalization_boundary, plot_phase_diagram
from grokjax.analysis.collapse import collapse, plot_collapse
from grokjax.analysis.dynamics import node_spectra, plot_node_spectra, plot_stages, stages
from grokjax.analysis.figures import PlotSkipped, png_bytes
from grokjax.analysis.grok_law import grok_law, plot_grok_law
from grokjax.analysis.irrep import irrep_scaling, plot_irrep_scaling
from grokjax.analysis.lr import lr_effect, plot_lr_effect
from grokjax.analysis.wd import plot_wd_speed, wd_speed
from grokjax.analysis.width import memorization_width, plot_memorization_width

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(figure, tmp_path, name="figure"):
    assert isinstance(figure, Figure)
    png = png_bytes(figure)
    (tmp_path / f"{name}.png").write_bytes(png)  # kept for a look after a failure
    assert png[:8] == PNG_MAGIC and len(png) > 10_000


def _tick_labels(ax) -> list[str]:
    ax.figure.canvas.draw()
    return [label.get_text() for label in ax.get_xticklabels()]


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def test_phase_diagram_and_collapse_name_the_verdict_on_c(rng, tmp_path):
    runs = boundary_runs(rng, seeds=8)
    boundary = generalization_boundary(runs, n_boot=100)
    law = boundary_law(boundary)
    figure = plot_phase_diagram(boundary, law)
    assert_png(figure, tmp_path, "phase")
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert any("c = " in text and ("CI contains 2.7482" in text or "CI excludes 2.7482" in text)
               for text in legend)
    assert_png(plot_collapse(collapse(runs), law), tmp_path, "collapse")


def test_stages_with_diagnostics_share_a_step_axis_from_zero(rng, tmp_path):
    runs = wd_runs(rng, etas=(1e-4, 1e-3), seeds=4)
    figure = plot_stages(stages(runs, synthetic_curves(runs, diagnostics=True)))
    assert_png(figure, tmp_path)
    axes = figure.axes
    assert len(axes) == 5 and "‖G_F‖" in axes[2].get_ylabel()
    assert axes[-1].get_xscale() == "symlog" and axes[-1].get_xlim()[0] == 0  # step 0 shown
    assert "memorization, feature emergence, grokking" in figure._suptitle.get_text()
    plain = plot_stages(stages(runs, synthetic_curves(runs)))
    assert [ax.get_ylabel() for ax in plain.axes] == ["loss", "accuracy"]


def test_wd_speed_shows_eta_zero_and_the_verdict(rng, tmp_path):
    figure = plot_wd_speed(wd_speed(wd_runs(rng)))
    assert_png(figure, tmp_path)
    top, bottom = figure.axes[:2]
    assert _tick_labels(bottom)[0] == "0"
    assert "CI contains 0" in top.get_title()
    legend = [t.get_text() for t in bottom.get_legend().get_texts()]
    assert any("CI contains -1" in text for text in legend)
    refused = plot_wd_speed(wd_speed(wd_runs(rng, etas=(1e-4, 1e-3))))
    assert "no slope: a slope needs grokked runs at ≥ 3" in refused.axes[1].get_title()


def test_lr_effect_memorization_width_and_irrep_scaling(rng, tmp_path):
    assert_png(plot_lr_effect(lr_effect(lr_runs(rng))), tmp_path, "lr")
    assert_png(plot_memorization_width(memorization_width(width_runs(rng))), tmp_path,
               "width")
    runs = irrep_runs(rng, "d_R", seeds=6)
    figure = plot_irrep_scaling(irrep_scaling(
        generalization_boundary(runs, n_boot=100), runs, n_boot=100))
    assert_png(figure, tmp_path, "irrep")
    assert _tick_labels(figure.axes[0]) == ["1", "2", "3"]  # d_k: the values the groups take
    assert _tick_labels(figure.axes[1]) == ["2", "3", "4", "6"]  # d_R
    assert "dicyclic24\n/ dihedral24" in _tick_labels(figure.axes[5])


def test_grok_law(rng, tmp_path):
    runs = grok_law_runs(rng)
    figure = plot_grok_law(grok_law(runs, generalization_boundary(runs, n_boot=50)))
    assert_png(figure, tmp_path, "grok_law")
    assert len(figure.axes) == 6  # a row of three per optimizer
    assert figure.axes[1].get_title().startswith("optimizer=adam: a = ")


def test_unusable_fits_raise_plot_skipped_with_the_reason(rng):
    runs = boundary_runs(rng, orders=(41,), seeds=4).assign(generalized=True)
    boundary = generalization_boundary(runs, n_boot=20)
    with pytest.raises(PlotSkipped, match="every run generalized"):
        plot_phase_diagram(boundary, None)
    with pytest.raises(PlotSkipped, match="needs the curves table"):
        plot_stages(stages(runs, None))
    many = wd_runs(rng, etas=tuple(np.geomspace(1e-5, 1e-3, 11)), seeds=2)
    with pytest.raises(PlotSkipped, match="12 conditions would need one colour each"):
        plot_stages(stages(many, synthetic_curves(many)))


def test_node_spectra_show_a_grokked_and_a_memorizing_run(tmp_path):
    """Synthetic features: the grokked run's nodes are pure frequencies, the other's flat."""
    order, width = 11, 8
    runs = pd.DataFrame({
        "run_id": ["a", "b"], "generalized": [True, False], "final_train_acc": [1.0, 1.0],
        "final_test_acc": [1.0, 0.1], "weight_decay": [1e-3, 0.0], "seed": [1, 1],
        "final_frequency_dominated_fraction": [1.0, 0.0], "group_name": ["Z_11"] * 2,
        "K": [width] * 2,
    })
    rows = []
    for run_id, pure in (("a", True), ("b", False)):
        for node in range(width):
            power = np.zeros(order // 2 + 1)
            if pure:
                power[node % 5 + 1] = 1.0
            else:
                power[1:] = 1.0
            rows.append({"run_id": run_id, "node": node, "active": True,
                         "dominant_frequency": int(power[1:].argmax()) + 1,
                         "dominant_power_fraction": power[1:].max() / power[1:].sum(),
                         **{f"power_{k:02d}": p for k, p in enumerate(power)}})
    spectra = node_spectra(runs, pd.DataFrame(rows))
    assert list(spectra.table.example) == ["grokked", "memorized"]
    assert_png(plot_node_spectra(spectra), tmp_path)
    assert node_spectra(runs, None).status == "unsupported"
