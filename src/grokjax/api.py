"""The Python API: run a sweep and read its results back as DataFrames, fits and Figures.

    import grokjax
    res = grokjax.run("wd", K=64)               # a sweep name, a TOML path or a dict
    res.runs, res.curves, res.features          # the tables (pandas)
    res.fit(); res.figures(); res.summary()     # what `grokjax fit`, `plot`, `summary` show
    res = grokjax.load("results/wd+K-64")       # a finished sweep, local or gs:// / s3://

Importing this module (and ``grokjax``) imports neither JAX nor pandas; what needs them imports
them when called.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
        memory_budget: int | None = None, ray: bool | str | None = None,
        chunk_runs: int | None = None, chunk_minutes: float | None = None,
        compile_cache: str | None = None, **overrides: Any) -> Results:
    """Train every run of ``sweep`` (as ``grokjax sweep``) and return its results.

    ``sweep``: a dict shaped like a sweep file, a path to a ``.toml`` file, or a name under
    ``sweeps/``. ``overrides`` are ``--set``/``--grid``: a single value fixes a field, a list or a
    range dict (``seed={"range": [1, 21]}``) makes it an axis of every grid. ``results`` is the
    results root (default ``results``; a local path, ``gs://`` or ``s3://``); the sweep writes to
    ``<results>/<name>[+overrides]``. A rerun resumes; a different sweep in that directory is
    refused unless ``overwrite``. ``memory_budget``: bytes per device (default: as the CLI).
    ``ray``: train on a Ray cluster (``--ray``): True for a Ray on this machine (or the one
    ``RAY_ADDRESS`` names), or its head's "host:port"; ``chunk_runs``, ``chunk_minutes`` and
    ``compile_cache`` are ``--chunk-runs``, ``--chunk-minutes`` and ``--compile-cache``.
    Raises ``grokjax.errors.SpecError`` with the CLI's message for anything that cannot run.
    """
    from grokjax import engine, ray_sweep
    from grokjax.sweep import run_sweep

    engine.use_every_cpu_core()  # before JAX starts its backends, as the CLI does
    spec = sweep_spec(sweep, scale, overrides)
    where = "results" if results is None else results
    if not ray:
        report = run_sweep(spec, where, overwrite=overwrite, memory_budget=memory_budget,
                           progress=progress)
    else:
        report = ray_sweep.run_on_ray(
            spec, where, address=None if ray is True else ray, overwrite=overwrite,
            memory_budget=memory_budget, progress=progress, chunk_runs=chunk_runs,
            chunk_minutes=chunk_minutes or ray_sweep.CHUNK_MINUTES,
            compile_cache=compile_cache or ray_sweep.DEFAULT_COMPILE_CACHE)
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


@dataclass(frozen=True)
class Results:
    """A sweep's results directory; each table is read once, when first used. Every command
    that reads results (summary, fit, plot, report, export) reads them through this class."""

    directory: Location

    @cached_property
    def runs(self) -> pd.DataFrame:
        """One row per run: its config and summary (``results/README.md``)."""
        from grokjax import outdir

        return outdir.read_table(self.directory, "runs")

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
        """Per grid point, seeds pooled (what ``grokjax summary`` prints): runs, fraction
        generalized, runs that grokked, median grok step and final test accuracy, diverged."""
        from grokjax.schema import GROKKED_COLUMN

        axes = self.spec.axes if self.spec else self.varying_columns()
        by = [key for key in axes if key != "seed"]
        grouped = self.runs.groupby(by or (lambda _: "all"), dropna=False)
        return grouped.agg(
            runs=("run_id", "size"),
            generalized=("generalized", "mean"),
            grokked=(GROKKED_COLUMN, "count"),
            median_grok_step=(GROKKED_COLUMN, "median"),
            median_final_test_acc=("final_test_acc", "median"),
            diverged=("diverged", "sum"),
        )

    def fit(self, n_boot: int = 1000, level: float = 0.95,
            seed: int = 0) -> dict[str, FitResult]:
        """Every analysis of ``grokjax fit``: {name: FitResult}; ``.usable`` ones have a
        ``.table`` and ``.laws``, the others a ``.message`` saying what the sweep lacks."""
        from grokjax import analysis

        return analysis.fit_all(self.runs, self.curves, self.features, n_boot=n_boot,
                                level=level, seed=seed)

    def figures(self, fits: dict[str, FitResult] | None = None) -> dict[str, Figure]:
        """The figures of ``grokjax plot`` that the data support, as matplotlib Figures (not
        saved; ``save_figures`` writes them). ``fits`` default to ``self.fit()``."""
        from matplotlib.figure import Figure

        from grokjax import analysis

        drawn = analysis.draw_figures(self.fit() if fits is None else fits)
        return {name: figure for name, figure in drawn.items() if isinstance(figure, Figure)}

    def save_figures(self, out: storage.Where | None = None,
                     fits: dict[str, FitResult] | None = None
                     ) -> dict[str, tuple[Location | None, str]]:
        """Every figure as ``<out>/<name>.png`` (default ``<directory>/_figures``, local or in
        the bucket): {name: (where it was written, "")} or {name: (None, why not drawn)}."""
        from grokjax import analysis, outdir, storage

        out = storage.Location(out) if out is not None else self.directory / outdir.FIGURES_DIR
        saved: dict[str, tuple[Location | None, str]] = {}
        for name, drawn in analysis.draw_figures(self.fit() if fits is None else fits).items():
            if isinstance(drawn, str):
                saved[name] = (None, drawn)
                continue
            storage.write_bytes(out / f"{name}.png", analysis.png_bytes(drawn))
            saved[name] = (out / f"{name}.png", "")
        return saved

    def report(self, out: storage.Where | None = None, n_boot: int = 1000,
               level: float = 0.95) -> Location:
        """Write ``grokjax report``'s Markdown and its figures beside it (default
        ``<directory>/_report/report.md``, local or in the bucket); returns where."""
        from grokjax import analysis, outdir, storage

        out = (storage.Location(out) if out is not None
               else self.directory / outdir.REPORT_DIR / "report.md")
        fits = self.fit(n_boot=n_boot, level=level)
        saved = self.save_figures(out.parent, fits)
        files = {name: (None if where is None else where.name, reason)
                 for name, (where, reason) in saved.items()}
        storage.write_text(out, analysis.report(self.runs, fits, files, self.provenance,
                                                str(self.directory), level))
        return out

    def __repr__(self) -> str:
        state = "complete" if self.manifest else "incomplete (no _manifest.json yet)"
        rounds = int(self.runs["round"].max())
        return (f"Results({str(self.directory)!r}: {len(self.runs)} runs, {rounds} "
                f"round{'s' * (rounds != 1)}, {state})")
