"""The Python API: run a sweep and read its results back as DataFrames, fits and Figures.

    import grokjax
    res = grokjax.run("wd", K=64)               # a sweep name, a TOML path or a dict
    res.runs, res.curves, res.features          # the tables (pandas)
    res.fit(); res.figures(); res.summary()     # what `grokjax fit`, `plot`, `summary` show
    res.where(weight_decay=[1e-3, 1e-2]).figures(by="train_fraction")   # some runs, your split
    res = grokjax.load("results/wd+K-64")       # a finished sweep, local or gs:// / s3://

Importing this module (and ``grokjax``) imports neither JAX nor pandas; what needs them imports
them when called.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from grokjax import storage
    from grokjax.analysis import FitResult
    from grokjax.spec import SweepSpec
    from grokjax.storage import Location

# Named sweeps are looked up under ./sweeps, then under the source checkout's sweeps/ (absent
# when grokjax is installed from a wheel).
SWEEPS_DIRS = (Path("sweeps"), Path(__file__).resolve().parents[2] / "sweeps")


def sweep_spec(sweep: Mapping | str | Path, scale: str = "default",
               overrides: dict[str, Any] | None = None) -> SweepSpec:
    """A sweep given as a dict, a TOML path or a name under ``sweeps/``, validated exactly as
    the command line validates its file."""
    from grokjax import spec
    from grokjax.errors import SpecError

    if isinstance(sweep, Mapping):
        return spec.from_dict(dict(sweep), scale, overrides)
    path = Path(sweep)
    if path.suffix == ".toml" or path.exists() or len(path.parts) > 1:
        return spec.load(path, scale, overrides)
    tried = [directory / f"{sweep}.toml" for directory in SWEEPS_DIRS]
    for candidate in tried:
        if candidate.is_file():
            return spec.load(candidate, scale, overrides)
    raise SpecError([f"no sweep named {str(sweep)!r}: neither "
                     f"{' nor '.join(map(str, tried))} exists; pass a dict, "
                     "a .toml path or the name of a file under sweeps/"], str(sweep))


def run(sweep: Mapping | str | Path, *, results: storage.Where | None = None,
        overwrite: bool = False, progress: bool = True, scale: str = "default",
        memory_budget: int | None = None, **overrides: Any) -> Results:
    """Train every run of ``sweep`` (as ``grokjax sweep``) and return its results.

    ``sweep``: a dict shaped like a sweep file, a path to a ``.toml`` file, or a name under
    ``sweeps/``. ``overrides`` are ``--set``/``--grid``: a single value fixes a field, a list or a
    range dict (``seed={"range": [1, 21]}``) makes it an axis of every grid. ``results`` is the
    results root (default ``results``; a local path, ``gs://`` or ``s3://``); the sweep writes to
    ``<results>/<name>[+overrides]``. A rerun resumes; a different sweep in that directory is
    refused unless ``overwrite``. ``memory_budget``: bytes per device (default: as the CLI).
    Raises ``grokjax.errors.SpecError`` with the CLI's message for anything that cannot run.
    """
    from grokjax import engine
    from grokjax.sweep import run_sweep

    engine.use_every_cpu_core()  # before JAX starts its backends, as the CLI does
    spec = sweep_spec(sweep, scale, overrides)
    report = run_sweep(spec, "results" if results is None else results, overwrite=overwrite,
                       memory_budget=memory_budget, progress=progress)
    return load(report.out_dir)


def load(path: storage.Where) -> Results:
    """The results of a sweep directory (local, ``gs://`` or ``s3://``) with finished runs."""
    from grokjax import outdir, storage
    from grokjax.errors import SpecError

    directory = storage.Location(path)
    if not outdir.has_table(directory, "runs"):
        what = ("does not exist" if not storage.exists(directory)
                else "holds no grokjax sweep results")
        raise SpecError([f"{directory} {what}; run `grokjax sweep` (grokjax.run in Python) "
                         "first"], "results")
    return Results(directory)


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _listed(values) -> str:
    shown = [_shown(v) for v in values]
    return ", ".join(shown[:12]) + (f", … ({len(shown)} values)" if len(shown) > 12 else "")


def _typed(name: str, value: Any, dtype: str) -> Any:
    """``value`` as the column's type; text (from the command line) is parsed."""
    from grokjax.errors import SpecError

    try:
        if dtype == "string":
            return str(value)
        if dtype == "bool":
            text = str(value).lower()
            if text not in ("true", "false"):
                raise ValueError
            return text == "true"
        number = float(value)
        if dtype == "int64":
            if not number.is_integer():
                raise ValueError
            return int(number)
        return number
    except (TypeError, ValueError):
        kind = {"bool": "true or false", "int64": "an integer"}.get(dtype, "a number")
        raise SpecError([f"{name}={value!r}: {name} takes {kind}"], "where") from None


def _selection_text(selection) -> str:
    return ", ".join(f"{name}={','.join(map(_shown, values))}" for name, values in selection)


def _hits(runs: pd.DataFrame, name: str, value: Any) -> pd.Series:
    """The runs whose ``name`` is ``value`` (floats to 1e-9). A train fraction also matches as
    asked for, 1 − test_size: the column holds the realised n_train / N (0.3 → 0.2987)."""
    import numpy as np
    import pandas as pd

    if not isinstance(value, float):
        return runs[name] == value
    hits = np.isclose(runs[name], value, rtol=1e-9, atol=0)
    if name == "train_fraction" and "test_size" in runs:
        hits |= np.isclose(1 - runs["test_size"], value, rtol=1e-9, atol=1e-12)
    return pd.Series(hits, index=runs.index)


@dataclass(frozen=True)
class Results:
    """A sweep's results directory; each table is read once, when first used. Every command
    that reads results (summary, fit, plot, report, export) reads them through this class.
    ``where(...)`` gives the same directory restricted to some runs (``selection``)."""

    directory: Location
    # where(...)'s choices in order: (column, the values of it that the runs kept have)
    selection: tuple[tuple[str, tuple], ...] = ()
    # the results of every run that a selection was taken from (its tables are read once)
    whole: Results | None = field(default=None, repr=False, compare=False)

    @cached_property
    def runs(self) -> pd.DataFrame:
        """One row per run: its config and summary (``results/README.md``)."""
        from grokjax import outdir

        if self.whole is None:
            return outdir.read_table(self.directory, "runs")
        runs = self.whole.runs
        for name, values in self.selection:
            runs = runs[runs[name].isin(values)]
        return runs.reset_index(drop=True)

    def where(self, **values: Any) -> Results:
        """These results restricted to the runs whose config has the given values, as a
        pandas user writes a filter: ``res.where(K=64)``, ``res.where(weight_decay=[1e-3,
        1e-2], group="23")`` (a list, tuple, range or array: any of its values). Every
        column of the runs' config can be used (``M``, ``n_train`` too); a train fraction
        may be given as asked for (0.3 selects the realised 0.2987). A name that is no column
        or a value no run has is refused, saying what there is. Tables, fits, figures,
        summary and report then cover those runs only; the figures and report are written
        to a subdirectory named after the selection."""
        import pandas as pd

        from grokjax import config, spec
        from grokjax.errors import SpecError
        from grokjax.schema import RUN_CONFIG_DTYPES

        runs, chosen = self.runs, list(self.selection)
        for name, wanted in values.items():
            if name not in RUN_CONFIG_DTYPES:
                varying = ", ".join(c for c in self.varying_columns()
                                    if c in config.CONDITION_COLUMNS or c == "seed")
                raise SpecError([f"no field {name!r} in the runs table"
                                 f"{_did_you_mean(name, list(RUN_CONFIG_DTYPES))}"
                                 f" (fields that vary here: {varying or 'none'})"], "where")
            wanted = spec.plain(list(wanted) if isinstance(wanted, range | set) else wanted)
            kept = pd.Series(False, index=runs.index)
            for value in wanted if isinstance(wanted, list) else [wanted]:
                hits = _hits(runs, name, _typed(name, value, RUN_CONFIG_DTYPES[name]))
                if not hits.any():
                    among = f" among the runs with {_selection_text(chosen)}" if chosen else ""
                    present = _listed(sorted(runs[name].dropna().unique().tolist()))
                    asked = ""
                    if name == "train_fraction" and "test_size" in runs:
                        asked = _listed(sorted((1 - runs["test_size"]).round(12).unique()))
                        asked = f" (as asked for: {asked})"
                    raise SpecError([f"{name}={value} matches no run{among}; {name} takes"
                                     f" {present} there{asked}"], "where")
                kept |= hits
            runs = runs[kept]
            chosen.append((name, tuple(sorted(runs[name].unique().tolist()))))
        return Results(self.directory, tuple(chosen), self.whole or self)

    @property
    def selection_text(self) -> str:
        """The selection as ``where`` takes it, e.g. ``K=64, weight_decay=0.001,0.01``."""
        return _selection_text(self.selection)

    def _output(self, base: str, by: str | None) -> Location:
        """``<directory>/<base>``; for a selection or a ``by``, the subdirectory named after
        them, e.g. ``_figures/K-64+weight_decay-0.001,0.01+by-lr``."""
        parts = [f"{name}-{','.join(map(_shown, values))}" for name, values in self.selection]
        label = "+".join(re.sub(r"[^A-Za-z0-9.,_-]", "_", part)
                         for part in parts + ([f"by-{by}"] if by else []))
        return self.directory.join(base, *([label] if label else []))

    def _check_by(self, by: str | None) -> None:
        """``by`` must be a config column that splits these runs into conditions."""
        from grokjax import config
        from grokjax.errors import SpecError
        from grokjax.schema import RUN_CONFIG_DTYPES

        if by is None:
            return
        varying = [c for c in config.CONDITION_COLUMNS
                   if c in self.runs and self.runs[c].nunique(dropna=False) > 1]
        if by in varying:
            return
        if by not in RUN_CONFIG_DTYPES:
            problem = f"no field {by!r} in the runs table{_did_you_mean(by, varying)}"
        elif by not in config.CONDITION_COLUMNS:
            problem = f"{by} is not a condition the figures keep apart (they pool over it)"
        else:
            problem = f"{by} is {_shown(self.runs[by].iloc[0])} in every run here"
        choices = ", ".join(varying) or "none (nothing but the seed varies)"
        raise SpecError([f"{problem}; the fields that vary here are: {choices}"], "by")

    @cached_property
    def curves(self) -> pd.DataFrame | None:
        """One row per (run, evaluated step); ``curves_with_config()`` adds the config. None
        when the directory has no curves table."""
        return self._optional_table("curves")

    @cached_property
    def features(self) -> pd.DataFrame | None:
        """One row per (run, hidden node), for sweeps with ``diagnostics = true``; else None."""
        return self._optional_table("features")

    def _optional_table(self, table: str) -> pd.DataFrame | None:
        from grokjax import outdir

        if self.whole is not None:
            frame = getattr(self.whole, table)
            return None if frame is None else frame[frame["run_id"].isin(self.runs["run_id"])]
        if not outdir.has_table(self.directory, table):
            return None
        return outdir.read_table(self.directory, table)

    @cached_property
    def provenance(self) -> dict[str, object] | None:
        """Versions, hardware, git commit, creation time and the sweep text as run; None for
        parts written without grokjax's metadata."""
        from grokjax import outdir

        try:
            return outdir.read_metadata(self.directory)
        except (KeyError, TypeError, ValueError):
            return None

    @cached_property
    def manifest(self) -> dict | None:
        """``_manifest.json``: written once every run is in; None while the sweep is incomplete."""
        from grokjax import outdir

        return outdir.read_json(self.directory / outdir.MANIFEST_FILE)

    @cached_property
    def spec(self) -> SweepSpec | None:
        """The sweep as run (``_sweep.toml`` at its recorded scale); None for a directory of
        tables that grokjax did not plan (e.g. parts copied together from several hosts)."""
        from grokjax import outdir, spec, storage

        plan = outdir.read_json(self.directory / outdir.PLAN_FILE)
        if plan is None:
            return None
        return spec.parse(storage.read_text(self.directory / outdir.SWEEP_FILE),
                          plan.get("scale", "default"), str(self.directory / outdir.SWEEP_FILE))

    def varying_columns(self) -> list[str]:
        """The config columns that take several values in this sweep, in table order."""
        from grokjax.schema import RUN_CONFIG_DTYPES

        return [column for column in RUN_CONFIG_DTYPES
                if column in self.runs and self.runs[column].nunique(dropna=False) > 1]

    def curves_with_config(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The curves with each run's config ``columns`` (default: group, M and every config
        column that varies) joined on ``run_id``, ready for ``groupby``/``seaborn``."""
        if columns is None:
            columns = list(dict.fromkeys(["group", "M", *self.varying_columns()]))
        config = self.runs[["run_id", *columns]]
        return self.curves.merge(config, on="run_id", how="left", validate="many_to_one")

    def summary(self) -> pd.DataFrame:
        """Per grid point, seeds pooled (what ``grokjax summary`` prints): ``runs``, the
        ``generalized_fraction`` of them (a share, 0 to 1), how many grokked (``grokked_runs``,
        a count) and their ``median_grok_step``, the ``median_final_test_acc`` and how many
        diverged (``diverged_runs``)."""
        from grokjax.schema import GROKKED_COLUMN

        axes = self.spec.axes if self.spec else self.varying_columns()
        by = [key for key in axes if key != "seed"]
        grouped = self.runs.groupby(by or (lambda _: "all"), dropna=False)
        return grouped.agg(
            runs=("run_id", "size"),
            generalized_fraction=("generalized", "mean"),
            grokked_runs=(GROKKED_COLUMN, "count"),
            median_grok_step=(GROKKED_COLUMN, "median"),
            median_final_test_acc=("final_test_acc", "median"),
            diverged_runs=("diverged", "sum"),
        )

    def fit(self, n_boot: int = 1000, level: float = 0.95,
            seed: int = 0) -> dict[str, FitResult]:
        """Every analysis of ``grokjax fit``: {name: FitResult}; ``.usable`` ones have a
        ``.table`` and ``.laws``, the others a ``.message`` saying what the sweep lacks."""
        from grokjax import analysis

        return analysis.fit_all(self.runs, self.curves, self.features, n_boot=n_boot,
                                level=level, seed=seed)

    def draw_figures(self, fits: dict[str, FitResult] | None = None,
                     by: str | None = None) -> dict[str, Figure | str]:
        """Every figure, or the reason it was not drawn (``figures`` keeps the drawn ones)."""
        from grokjax import analysis

        self._check_by(by)
        return analysis.draw_figures(self.fit() if fits is None else fits, by)

    def figures(self, fits: dict[str, FitResult] | None = None,
                by: str | None = None) -> dict[str, Figure]:
        """The figures of ``grokjax plot`` that the data support, as matplotlib Figures that
        Jupyter shows (not saved; ``save_figures`` writes them). ``fits`` default to
        ``self.fit()``. ``by``: the config column drawn as colours (one per value) where a
        figure compares conditions in a panel, a panel per combination of the others; by
        default each figure chooses, and one with too many conditions says how to choose."""
        from matplotlib.figure import Figure

        drawn = self.draw_figures(fits, by)
        return {name: figure for name, figure in drawn.items() if isinstance(figure, Figure)}

    def save_figures(self, out: storage.Where | None = None,
                     fits: dict[str, FitResult] | None = None, by: str | None = None
                     ) -> dict[str, tuple[Location | None, str]]:
        """Every figure as ``<out>/<name>.png`` (default ``<directory>/_figures``, local or in
        the bucket; ``_figures/<selection>`` after ``where`` or with ``by``): {name: (where it
        was written, "")} or {name: (None, why not drawn)}."""
        from grokjax import analysis, outdir, storage

        out = (storage.Location(out) if out is not None
               else self._output(outdir.FIGURES_DIR, by))
        saved: dict[str, tuple[Location | None, str]] = {}
        for name, drawn in self.draw_figures(fits, by).items():
            if isinstance(drawn, str):
                saved[name] = (None, drawn)
                continue
            storage.write_bytes(out / f"{name}.png", analysis.png_bytes(drawn))
            saved[name] = (out / f"{name}.png", "")
        return saved

    def report(self, out: storage.Where | None = None, n_boot: int = 1000,
               level: float = 0.95, by: str | None = None) -> Location:
        """Write ``grokjax report``'s Markdown and its figures beside it (default
        ``<directory>/_report/report.md``, local or in the bucket; ``_report/<selection>/``
        after ``where`` or with ``by``); returns where."""
        from grokjax import analysis, outdir, storage

        out = (storage.Location(out) if out is not None
               else self._output(outdir.REPORT_DIR, by) / "report.md")
        fits = self.fit(n_boot=n_boot, level=level)
        saved = self.save_figures(out.parent, fits, by)
        files = {name: (None if where is None else where.name, reason)
                 for name, (where, reason) in saved.items()}
        source = str(self.directory) + (f" where {self.selection_text}"
                                        if self.selection else "")
        storage.write_text(out, analysis.report(self.runs, fits, files, self.provenance,
                                                source, level))
        return out

    def __repr__(self) -> str:
        state = "complete" if self.manifest else "incomplete (no _manifest.json yet)"
        rounds = int(self.runs["round"].max())
        where, runs = "", f"{len(self.runs)} runs"
        if self.whole is not None:
            where = f" where {self.selection_text}"
            runs = f"{len(self.runs)} of {len(self.whole.runs)} runs"
        return (f"Results({str(self.directory)!r}{where}: {runs}, {rounds} "
                f"round{'s' * (rounds != 1)}, {state})")
