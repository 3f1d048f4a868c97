"""Figures, on the synthetic tables and fits of test_fit.py."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from test_fit import (
    boundary_runs,
    grok_law_runs,
    irrep_runs,
    lr_runs,
    synthetic_curves,
    tfwd_runs,
    wd_runs,
    width_runs,
)

from grokjax import analysis
from grokjax.analysis.boundary import boundary_law, generalization_boundary, plot_phase_diagram
from grokjax.analysis.collapse import collapse, plot_collapse
from grokjax.analysis.core import as_float
from grokjax.analysis.dynamics import node_spectra, plot_node_spectra, plot_stages, stages
from grokjax.analysis.figures import PlotSkipped, png_bytes
from grokjax.analysis.generalization_map import generalization_map, plot_generalization_map
from grokjax.analysis.grok_law import grok_law, plot_grok_law
from grokjax.analysis.grokking_time import grokking_time, plot_grokking_time
from grokjax.analysis.irrep import irrep_scaling, plot_irrep_scaling
from grokjax.analysis.lr import lr_effect, plot_lr_effect
from grokjax.analysis.wd import plot_wd_speed, wd_speed
from grokjax.analysis.width import memorization_width, plot_memorization_width
from grokjax.schema import GROKKED_COLUMN

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


def test_every_figure_shows_itself_in_jupyter_without_pyplot(rng):
    """IPython shows an object with _repr_png_ as an image; a bare Figure, without
    `%matplotlib inline`, prints as '<Figure size 620x800 with 2 Axes>'."""
    formatters = pytest.importorskip("IPython.core.formatters")
    runs = tfwd_runs(rng)
    drawn = analysis.draw_figures(analysis.fit_all(runs, synthetic_curves(runs), n_boot=20))
    figures = {name: figure for name, figure in drawn.items() if isinstance(figure, Figure)}
    assert {"stages", "grokking_time", "generalization_map"} <= set(figures)
    for figure in figures.values():
        data, _ = formatters.DisplayFormatter().format(figure)
        assert data["image/png"][:8] == PNG_MAGIC


def test_phase_diagram_and_collapse_name_the_verdict_on_c(rng, tmp_path):
    runs = boundary_runs(rng, seeds=8)
    boundary = generalization_boundary(runs)
    law = boundary_law(boundary)
    figure = plot_phase_diagram(boundary, law)
    assert_png(figure, tmp_path, "phase")
    legend = [" ".join(t.get_text().split()) for t in figure.axes[0].get_legend().get_texts()]
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
        generalization_boundary(runs), runs, n_boot=100))
    assert_png(figure, tmp_path, "irrep")
    assert _tick_labels(figure.axes[0]) == ["1", "2", "3"]  # d_k: the values the groups take
    assert _tick_labels(figure.axes[1]) == ["2", "3", "4", "6"]  # d_R
    assert "dicyclic24\n/ dihedral24" in _tick_labels(figure.axes[5])


def test_grok_law(rng, tmp_path):
    runs = grok_law_runs(rng)
    figure = plot_grok_law(grok_law(runs, generalization_boundary(runs)))
    assert_png(figure, tmp_path, "grok_law")
    assert len(figure.axes) == 6  # a row of three per optimizer
    assert figure.axes[1].get_title().startswith("optimizer=adam: a = ")


def test_unusable_fits_raise_plot_skipped_with_the_reason(rng):
    runs = boundary_runs(rng, orders=(41,), seeds=4).assign(generalized=True)
    boundary = generalization_boundary(runs)
    with pytest.raises(PlotSkipped, match="every run generalized"):
        plot_phase_diagram(boundary, None)
    with pytest.raises(PlotSkipped, match="needs the curves table"):
        plot_stages(stages(runs, None))
    many = wd_runs(rng, etas=tuple(np.geomspace(1e-5, 1e-3, 11)), seeds=2)
    with pytest.raises(PlotSkipped, match=r"12 conditions \(the values of weight_decay\) would "
                                          r"need one colour each \(limit 10\): choose some with "
                                          r"--where FIELD=VALUE .*e\.g\. --where weight_decay=0"):
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


# ---------------------------------------------------------------------------------------------
# Figures that adapt to the sweep: conditions as colours and panels, --by, censored runs


def _texts(figure) -> list[str]:
    return [text.get_text() for text in figure.findobj(Text)]


def _labels(axis) -> list[str]:
    axis.figure.canvas.draw()
    return [label.get_text() for label in axis.get_ticklabels()]


def _visible(figure) -> list:
    return [ax for ax in figure.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def _renumbered(runs: pd.DataFrame) -> pd.DataFrame:
    return runs.reset_index(drop=True).assign(run_id=lambda t: [f"run{i:05d}" for i in t.index])


def test_stages_split_their_conditions_into_colours_and_panels(rng, tmp_path):
    runs = _renumbered(pd.concat([wd_runs(rng, seeds=2).assign(train_fraction=p)
                                  for p in (0.2, 0.3, 0.4, 0.5)]))
    result = stages(runs, synthetic_curves(runs))  # 6 weight decays × 4 train fractions
    figure = plot_stages(result)
    assert_png(figure, tmp_path, "stages_split")
    axes = _visible(figure)
    assert len(axes) == 4 * 2  # a column (loss, accuracy) per train fraction
    assert [ax.get_title() for ax in axes[:4]] == [f"train_fraction={p}" for p in
                                                   (0.2, 0.3, 0.4, 0.5)]
    legend = axes[0].get_legend()
    assert legend.get_title().get_text().startswith("weight_decay")
    assert len(legend.get_texts()) == 6
    by = plot_stages(result, by="train_fraction")  # 4 colours, 6 columns in two rows
    assert_png(by, tmp_path, "stages_by")
    assert len(_visible(by)) == 6 * 2 and len(by.axes) == 8 * 2
    assert len(_visible(by)[0].get_legend().get_texts()) == 4


def test_stages_mark_where_stopped_runs_curves_end(rng, tmp_path):
    runs = wd_runs(rng, etas=(1e-4, 1e-3), seeds=4)
    t_grok = as_float(runs[GROKKED_COLUMN])
    stop = np.where(runs.weight_decay == 1e-3, t_grok + 100, np.nan)  # these all grokked
    runs["stopped_step"] = pd.array(np.nan_to_num(stop, nan=0).astype(int), dtype="Int64")
    runs.loc[np.isnan(stop), "stopped_step"] = pd.NA
    curves = synthetic_curves(runs)
    ends = curves.run_id.map(dict(zip(runs.run_id, np.nan_to_num(stop, nan=np.inf),
                                      strict=True)))
    curves = curves[curves.step <= ends]  # a stopped run's curves end at its stop step
    result = stages(runs, curves)
    assert result.table.set_index("weight_decay").loc[1e-3, "stopped_runs"] == 4
    assert result.table.set_index("weight_decay").loc[1e-4, "stopped_runs"] == 0
    figure = plot_stages(result)
    assert_png(figure, tmp_path, "stages_stopped")
    marked = {x for ax in figure.axes for line in ax.get_lines() if line.get_marker() == "v"
              for x in line.get_xdata()}
    last = curves.groupby("run_id").step.max()
    assert marked == set(last[runs.run_id[runs.weight_decay == 1e-3]])
    assert any(text.startswith("stopped runs' curves end") for text in _texts(figure))


def test_grokking_time_against_every_swept_field_with_censored_runs(rng, tmp_path):
    runs = _renumbered(pd.concat([wd_runs(rng, etas=(1e-5, 1e-4, 1e-3), seeds=6,
                                          steps=30_000).assign(K=width) for width in (64, 256)]))
    figure = plot_grokking_time(grokking_time(runs))
    assert_png(figure, tmp_path, "grokking_time")
    by_k, by_eta = _visible(figure)
    assert by_k.get_xlabel() == "K (log scale)" and _labels(by_k.xaxis) == ["64", "256"]
    assert by_eta.get_xlabel() == "weight_decay (log scale)"
    assert _labels(by_eta.xaxis) == ["0", "1e-05", "0.0001", "0.001"]  # η = 0 on its own tick
    assert by_k.get_yscale() == "log"
    texts = _texts(figure)
    assert "not within\n30000\nsteps" in texts and "0 (grokked 0/12)" in texts
    assert not any("never" in text for text in texts)  # censored, not failed


def test_generalization_map_of_one_group_and_its_phase_diagram_refused(rng, tmp_path):
    runs = tfwd_runs(rng)
    boundary = generalization_boundary(runs)
    with pytest.raises(PlotSkipped, match=r"one group only \(71, M = 71\).*generalization_map"):
        plot_phase_diagram(boundary, boundary_law(boundary))
    cells = generalization_map(runs)
    figure = plot_generalization_map(cells, boundary)
    assert_png(figure, tmp_path, "generalization_map")
    (ax,) = _visible(figure)
    assert _labels(ax.yaxis) == ["0", "0.0001", "0.001"] and ax.get_ylabel() == "weight_decay"
    assert _labels(ax.xaxis) == ["0.09998", "0.15", "0.2", "0.2999", "0.4499", "0.6001"]
    texts = _texts(figure)
    assert all(f"{k}/{n}" in texts for k, n in zip(cells.table.n_generalized, cells.table.n,
                                                    strict=True))
    assert "p*: half the seeds generalize (95% CI)" in texts


def test_generalization_map_rows_by_and_the_refusal_naming_where_and_by(rng, tmp_path):
    runs = _renumbered(pd.concat([tfwd_runs(rng, seeds=3).assign(lr=lr) for lr in (1e-3, 1e-2)]))
    cells = generalization_map(runs)
    default = plot_generalization_map(cells, None)  # rows: weight_decay, the most values
    assert [ax.get_ylabel() for ax in _visible(default)] == ["weight_decay"] * 2
    assert [ax.get_title() for ax in _visible(default)] == ["lr=0.001", "lr=0.01"]
    by = plot_generalization_map(cells, None, by="lr")
    assert_png(by, tmp_path, "generalization_map_by_lr")
    assert [ax.get_ylabel() for ax in _visible(by)] == ["lr"] * 3
    wide = _renumbered(pd.concat([tfwd_runs(rng, seeds=1).assign(K=k) for k in range(8, 21)]))
    with pytest.raises(PlotSkipped, match=r"13 conditions \(the values of K\) would need one "
                                          r"panel each \(limit 12\): choose some with --where "
                                          r".*e\.g\. --where K=8; or choose the field compared "
                                          r"within each panel with --by FIELD .*: weight_decay"):
        plot_generalization_map(generalization_map(wide), None, by="weight_decay")
