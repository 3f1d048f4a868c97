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
    from grokjax.fit import FitResult
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

    if isinstance(sweep, Mapping):
        return spec.from_dict(dict(sweep), scale, overrides)
    path = Path(sweep)
    if path.suffix == ".toml" or path.exists() or len(path.parts) > 1:
        return spec.load(path, scale, overrides)
    tried = [directory / f"{sweep}.toml" for directory in SWEEPS_DIRS]
    for candidate in tried:
        if candidate.is_file():
            return spec.load(candidate, scale, overrides)
    raise spec.SpecError([f"no sweep named {str(sweep)!r}: neither "
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
    Raises ``grokjax.spec.SpecError`` with the CLI's message for anything that cannot run.
    """
    from grokjax import engine
    from grokjax import sweep as sweeps

    engine.use_every_cpu_core()  # before JAX starts its backends, as the CLI does
    spec = sweep_spec(sweep, scale, overrides)
    report = sweeps.run_sweep(spec, "results" if results is None else results,
                              overwrite=overwrite, memory_budget=memory_budget,
                              progress=progress)
    return load(report.out_dir)


def load(path: storage.Where) -> Results:
    """The results of a sweep directory (local, ``gs://`` or ``s3://``) with finished runs."""
    from grokjax import outdir, results, spec, storage

    directory = storage.Location(path)
    if (outdir.read_json(directory / outdir.PLAN_FILE) is None
            or not results.has_table(directory, "runs")):
        what = ("does not exist" if not storage.exists(directory)
                else "holds no grokjax sweep results")
        raise spec.SpecError([f"{directory} {what}; run `grokjax sweep` (grokjax.run in "
                              "Python) first"], "results")
    return Results(directory)


@dataclass(frozen=True)
class Results:
    """A sweep's results directory; each table is read once, when first used."""

    directory: Location

    @cached_property
    def runs(self) -> pd.DataFrame:
        """One row per run: its config and summary (``results/README.md``)."""
        from grokjax import results

        return results.read_runs(self.directory)

    @cached_property
    def curves(self) -> pd.DataFrame:
        """One row per (run, evaluated step); ``curves_with_config()`` adds the config."""
        from grokjax import results

        return results.read_curves(self.directory)

    @cached_property
    def features(self) -> pd.DataFrame | None:
        """One row per (run, hidden node), for sweeps with ``diagnostics = true``; else None."""
        from grokjax import results

        if not results.has_table(self.directory, "features"):
            return None
        return results.read_features(self.directory)

    @cached_property
    def provenance(self) -> dict[str, object]:
        """Versions, hardware, git commit, creation time and the sweep text as run."""
        from grokjax import results

        return results.read_metadata(self.directory)

    @cached_property
    def manifest(self) -> dict | None:
        """``_manifest.json``: written once every run is in; None while the sweep is incomplete."""
        from grokjax import outdir

        return outdir.read_json(self.directory / outdir.MANIFEST_FILE)

    @cached_property
    def spec(self) -> SweepSpec:
        """The sweep as run (``_sweep.toml`` at its recorded scale)."""
        from grokjax import outdir, spec, storage

        scale = outdir.read_json(self.directory / outdir.PLAN_FILE).get("scale", "default")
        return spec.parse(storage.read_text(self.directory / outdir.SWEEP_FILE), scale,
                          str(self.directory / outdir.SWEEP_FILE))

    def varying_columns(self) -> list[str]:
        """The config columns that take several values in this sweep, in table order."""
        from grokjax.results import RUN_CONFIG_DTYPES

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
        by = [key for key in self.spec.axes if key != "seed"]
        grouped = self.runs.groupby(by or (lambda _: "all"), dropna=False)
        return grouped.agg(
            runs=("run_id", "size"),
            generalized=("generalized", "mean"),
            grokked=("step_test_acc_099", "count"),
            median_grok_step=("step_test_acc_099", "median"),
            median_final_test_acc=("final_test_acc", "median"),
            diverged=("diverged", "sum"),
        )

    def fit(self, n_boot: int = 1000, level: float = 0.95,
            seed: int = 0) -> dict[str, FitResult]:
        """Every analysis of ``grokjax fit``: {name: FitResult}; ``.usable`` ones have a
        ``.table`` and ``.laws``, the others a ``.message`` saying what the sweep lacks."""
        from grokjax import analyses

        return analyses.fit_all(self.runs, self.curves, self.features, n_boot=n_boot,
                                level=level, seed=seed)

    def figures(self, fits: dict[str, FitResult] | None = None) -> dict[str, Figure]:
        """The figures of ``grokjax plot`` that the data support, as matplotlib Figures (not
        saved; ``fig.savefig(path)``). ``fits`` default to ``self.fit()``."""
        from matplotlib.figure import Figure

        from grokjax import analyses

        drawn = analyses.draw_figures(self.fit() if fits is None else fits)
        return {name: figure for name, figure in drawn.items() if isinstance(figure, Figure)}

    def report(self, out: str | Path | None = None, n_boot: int = 1000,
               level: float = 0.95) -> Path:
        """Write ``grokjax report``'s Markdown (default ``<directory>/_report/report.md``)."""
        from grokjax import analyses, spec

        if not self.directory.is_local:
            raise spec.SpecError([f"{self.directory}: the report reads a local directory; copy "
                                  "the sweep directory here first"], "report")
        return analyses.write_report(self.directory.path, out, n_boot=n_boot, level=level)

    def __repr__(self) -> str:
        state = "complete" if self.manifest else "incomplete (no _manifest.json yet)"
        rounds = int(self.runs["round"].max())
        return (f"Results({str(self.directory)!r}: {len(self.runs)} runs, {rounds} "
                f"round{'s' * (rounds != 1)}, {state})")
