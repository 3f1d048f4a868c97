"""The Python API: run a sweep and read its results back as DataFrames, fits and Figures.

    import grokjax
    res = grokjax.run("wd", K=64)               # a sweep name, a TOML path or a dict
    res.runs, res.curves, res.features          # the tables (pandas)
    res.fit(); res.figures(); res.summary()     # what `grokjax fit`, `plot`, `summary` show
    res.where(weight_decay=[1e-3, 1e-2]).figures(by="train_fraction")   # some runs, your split
    res = grokjax.load("results/wd+K-64")       # a sweep, local or gs:// / s3://
    res = grokjax.load(["results/a", "results/b"])   # several pooled, a run id once
    res.live; res.curves_live()                 # a sweep still running: its runs in flight
    res.weights(run_id); res.model(run_id)      # with keep_weights: a trained network

Importing this module (and ``grokjax``) imports neither JAX nor pandas; what needs them imports
them when called.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
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
    ``<results>/<name>[+overrides]``. A rerun resumes and a changed sweep trains only its new
    runs there; ``overwrite`` sets the directory's results aside and trains afresh.
    ``memory_budget``: bytes per device (default: as the CLI). ``ray``: train on a Ray cluster
    (``--ray``): True for a Ray on this machine (or the one ``RAY_ADDRESS`` names), or its
    head's "host:port"; ``chunk_runs``, ``chunk_minutes`` and ``compile_cache`` are
    ``--chunk-runs``, ``--chunk-minutes`` and ``--compile-cache``.
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


def load(path: storage.Where | Iterable[storage.Where], *,
         include_earlier: bool = False) -> Results:
    """The results of a sweep directory (local, ``gs://`` or ``s3://``), or of several pooled
    into one set of tables (a run id once: the first directory's). A sweep still running loads
    too: its finished runs are in the tables, the others in ``live``.

    A directory whose sweep changed keeps the runs of its earlier versions in place;
    ``include_earlier`` pools them in (``Results.earlier`` shows them apart)."""
    from grokjax import outdir, storage
    from grokjax.errors import SpecError

    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    if not paths:
        raise SpecError(["no results directory given"], "results")
    directories = tuple(storage.Location(p) for p in paths)
    for directory in directories:
        if not (outdir.has_table(directory, "runs") or outdir.read_plan(directory)):
            what = ("does not exist" if not storage.exists(directory)
                    else "holds no grokjax sweep results")
            raise SpecError([f"{directory} {what}; run `grokjax sweep` (grokjax.run in Python) "
                             "first"], "results")
    return Results(directories, include_earlier)


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
    """One sweep directory's results, or several pooled; each table is read once, when first
    used (``live`` and ``curves_live`` read afresh). Every command that reads results (summary,
    fit, plot, report, export) reads them through this class. ``where(...)`` gives the same
    results restricted to some runs (``selection``)."""

    directories: tuple[Location, ...]
    include_earlier: bool = False  # pool the runs of earlier versions of each sweep
    # where(...)'s choices in order: (column, the values of it that the runs kept have)
    selection: tuple[tuple[str, tuple], ...] = ()
    # the results of every run that a selection was taken from (its tables are read once)
    whole: Results | None = field(default=None, repr=False, compare=False)

    @property
    def directory(self) -> Location:
        """The sweep directory; results pooled from several have none."""
        from grokjax.errors import SpecError

        if len(self.directories) != 1:
            raise SpecError([f"these results pool {len(self.directories)} directories, so "
                             "there is no one directory to write into: give where (--out, or "
                             "out= in Python)"], "results")
        return self.directories[0]

    def _read(self, directory: Location, table: str) -> pd.DataFrame | None:
        from grokjax import outdir

        return outdir.read_table(directory, table) if outdir.has_table(directory, table) else None

    @cached_property
    def _every_run(self) -> list[pd.DataFrame]:
        """Per directory, every run in it (an empty runs table before the first finishes)."""
        import pandas as pd

        from grokjax.schema import RUNS_DTYPES

        empty = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in RUNS_DTYPES.items()})
        tables = [self._read(directory, "runs") for directory in self.directories]
        return [empty if runs is None else runs for runs in tables]

    @cached_property
    def _selected(self) -> list[pd.DataFrame]:
        """Per directory, the runs these results hold: its current sweep's (and with
        ``include_earlier`` the earlier versions'), without those of earlier directories."""
        from grokjax import outdir

        seen: set[str] = set()
        selected = []
        for directory, runs in zip(self.directories, self._every_run, strict=True):
            planned = None if self.include_earlier else outdir.planned_runs(directory)
            if planned is not None:
                runs = runs[runs["run_id"].isin(planned)]
            runs = runs[~runs["run_id"].isin(seen)]
            seen.update(runs["run_id"])
            selected.append(runs)
        return selected

    def _pooled(self, table: str) -> pd.DataFrame | None:
        """A table's rows of the selected runs, from the directory each was selected in."""
        if self.whole is not None:
            frame = getattr(self.whole, table)
            return None if frame is None else frame[frame["run_id"].isin(self.runs["run_id"])]
        frames = []
        for directory, runs in zip(self.directories, self._selected, strict=True):
            frame = self._read(directory, table)
            if frame is not None:
                frames.append(frame[frame["run_id"].isin(runs["run_id"])])
        return _concat(frames) if frames else None

    @cached_property
    def runs(self) -> pd.DataFrame:
        """One row per run: its config and summary (``results/README.md``)."""
        return _concat(self._selected) if self.whole is None else self._chosen(self.whole.runs)

    def _chosen(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``frame`` (runs, or curves with their config) in the selection."""
        for name, values in self.selection:
            frame = frame[frame[name].isin(values)]
        return frame.reset_index(drop=True)

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
        return replace(self, selection=tuple(chosen), whole=self.whole or self)

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
    def earlier(self) -> pd.DataFrame:
        """The runs of earlier versions of each sweep, kept in its directory but not planned
        by the sweep as last run (``load(..., include_earlier=True)`` pools them in)."""
        if self.whole is not None:
            return self._chosen(self.whole.earlier)
        return _concat([runs[~runs["run_id"].isin(self.runs["run_id"])]
                        for runs in self._every_run])

    @cached_property
    def curves(self) -> pd.DataFrame | None:
        """One row per (run, evaluated step); ``curves_with_config()`` adds the config. None
        when the directory has no curves table."""
        return self._pooled("curves")

    @cached_property
    def features(self) -> pd.DataFrame | None:
        """One row per (run, hidden node), for sweeps with ``diagnostics = true``; else None."""
        return self._pooled("features")

    @property
    def live(self) -> pd.DataFrame:
        """The curves so far of the runs in flight of a sweep that is running, each row with its
        run's config; read afresh at every use, at most a segment and a few seconds behind the
        device (README). Empty when nothing is in flight."""
        import pandas as pd

        from grokjax import outdir

        frames = []
        indexes = (self.whole or self)._run_indexes
        for directory, index in zip(self.directories, indexes, strict=True):
            live = outdir.read_live(directory)
            if live is not None:  # a run already in a part is shown from there
                frames.append(live[~live["run_id"].isin(index.scan())])
        if not frames:
            return pd.DataFrame(columns=["run_id", "step"])
        return self._chosen(_concat(frames))

    def curves_live(self, columns: list[str] | None = None) -> pd.DataFrame:
        """Every curve so far, of finished runs and of runs in flight, with each run's config
        ``columns`` (default: group, M and every config column that varies) and ``finished``
        (False: still training): what to plot while a sweep runs. Reads the directories afresh
        at every call."""
        from grokjax.schema import RUN_CONFIG_DTYPES

        whole = Results(self.directories, self.include_earlier)
        fresh = replace(self, whole=whole) if self.selection else whole
        finished = fresh.curves  # of the runs read first; the live view, read next, has none
        live = fresh.live
        live_curves = live[[c for c in live if c not in RUN_CONFIG_DTYPES and c != "round"]]
        finished = finished if finished is not None else live_curves.iloc[:0]
        configs = _concat([fresh.runs, live.drop_duplicates("run_id")])
        if columns is None:
            columns = list(dict.fromkeys(["group", "M", *_varying(configs)]))
        curves = _concat([finished.assign(finished=True), live_curves.assign(finished=False)])
        return curves.merge(configs[["run_id", *columns]], on="run_id", how="left",
                            validate="many_to_one")

    @cached_property
    def _run_indexes(self) -> list:
        """Per directory, which runs its parts hold (footers read once each, new parts only)."""
        from grokjax import outdir

        return [outdir.RunIndex(directory, None) for directory in self.directories]

    @cached_property
    def provenance(self) -> dict[str, object] | None:
        """Versions, hardware, git commit, creation time and the sweep text as run (of the
        first directory); None for parts written without grokjax's metadata, and before the
        first run of a sweep is written."""
        from grokjax import outdir

        try:
            return outdir.read_metadata(self.directories[0])
        except (KeyError, TypeError, ValueError, OSError):
            return None

    @cached_property
    def manifest(self) -> dict | None:
        """``_manifest.json``: written once every run is in; None while the sweep is incomplete
        (and for results pooled from several directories)."""
        from grokjax import outdir

        if len(self.directories) != 1:
            return None
        return outdir.read_json(self.directory / outdir.MANIFEST_FILE)

    @cached_property
    def spec(self) -> SweepSpec | None:
        """The sweep as last run (``_sweep.toml`` at its recorded scale); None for a directory
        of tables that grokjax did not plan (e.g. parts copied together from several hosts),
        and for results pooled from several directories."""
        from grokjax import outdir, spec, storage

        plan = outdir.read_plan(self.directories[0])
        if plan is None or len(self.directories) != 1:
            return None
        return spec.parse(storage.read_text(self.directory / outdir.SWEEP_FILE),
                          plan.get("scale", "default"), str(self.directory / outdir.SWEEP_FILE))

    def varying_columns(self) -> list[str]:
        """The config columns that take several values in this sweep, in table order."""
        return _varying(self.runs)

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

        # Earlier versions or other sweeps pooled in may differ in any field, not the axes.
        axes = self.spec.axes if self.spec and not self.include_earlier else \
            self.varying_columns()
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
        source = " + ".join(map(str, self.directories)) + (
            f" where {self.selection_text}" if self.selection else "")
        storage.write_text(out, analysis.report(self.runs, fits, files, self.provenance,
                                                source, level))
        return out

    def weight_steps(self, run_id: str) -> list[int]:
        """The steps at which the run kept its parameters (keep_weights), its last included."""
        return sorted(self._kept(run_id))

    def weights(self, run_id: str, step: int | None = None) -> dict[str, np.ndarray]:
        """The run's parameters at ``step`` (default: its last), as float32 numpy arrays in the
        paper layout of ``grokjax.model``: W (num_ops·M, K), V (K, M), and where the run has
        them U (other_layers, K, K), E (M, M), W_imag, V_imag."""
        from grokjax.errors import SpecError

        kept = self._kept(run_id)
        step = max(kept) if step is None else step
        if step not in kept:
            raise SpecError([f"run {run_id} kept its weights at steps {sorted(kept)}, not at "
                             f"{step}; keep more with keep_weights_every or keep_weights_at"],
                            "weights")
        return dict(kept[step])

    def model(self, run_id: str, step: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
        """The run's network at ``step`` (default: its last) as a function from operands
        (n, num_ops) of group elements (rows of ``grokjax.dataset.operation_table``) to logits
        (n, M), by the model code training uses (``evaluate`` gives its curves' numbers to the
        bit: a loss computed apart from the logits may round differently in the last bit)."""
        from functools import partial

        import jax
        import jax.numpy as jnp
        import numpy as np

        from grokjax import model

        run = self._run(run_id)
        params = {name: jnp.asarray(array) for name, array in self.weights(run_id, step).items()}
        forward = jax.jit(partial(model.forward, order=int(run["M"]),
                                  activation=run["activation"], precision=run["precision"]))
        multiplier = jnp.float32(run["output_multiplier"])
        return lambda operands: np.asarray(forward(params, jnp.asarray(operands, jnp.int32),
                                                   output_multiplier=multiplier))

    def evaluate(self, run_id: str, step: int | None = None) -> dict[str, float]:
        """The run's metrics at ``step`` (default: its last) recomputed from its kept weights
        by training's own evaluation (train/test loss and accuracy, and the diagnostics of a
        run that has them): with float32 weights, on the backend that trained the run, the
        numbers of its curves at that step, bit for bit."""
        import jax
        import numpy as np

        from grokjax import config, dataset, engine, groups, plan
        from grokjax.train import HParams, Task, make_train, split_for

        run = config.from_columns(self._run(run_id))
        group = groups.parse_group(run.group)
        fns = make_train(plan.static_of(run, group, stop=None), engine.layout_for().onehot)
        hparams = HParams(*(np.float32(getattr(run, name) or 0.0) for name in HParams._fields))
        table = dataset.operation_table(group, run.num_ops)
        task = Task(table.inputs, table.labels)
        train_rows, _ = dataset.split(len(task.labels), run.test_size, run.seed)
        state = fns.init_from_params(self.weights(run_id, step), hparams)
        metrics = jax.jit(fns.evaluate)(state, hparams, split_for(task, train_rows,
                                                                  len(train_rows)), task)
        return {name: float(value) for name, value in metrics.items()}

    def torch_state_dict(self, run_id: str, step: int | None = None) -> dict:
        """The run's parameters at ``step`` (default: its last) as the ``state_dict`` of the
        paper code's ``ModularAdditionNN`` (``embedding.weight``, ``W.weight``,
        ``other_layers.{i}.weight``, ``V.weight``; torch tensors). Needs torch."""
        from grokjax import export

        run = self._run(run_id)
        return export.torch_state_dict(self.weights(run_id, step), int(run["M"]))

    def _run(self, run_id: str) -> pd.Series:
        from grokjax.errors import SpecError

        rows = self.runs[self.runs["run_id"] == run_id]
        if rows.empty:
            raise SpecError([f"no run {run_id!r} in {' + '.join(map(str, self.directories))}"],
                            "weights")
        return rows.iloc[0]

    @cached_property
    def _kept_cache(self) -> dict[str, dict]:
        return {}

    def _kept(self, run_id: str) -> dict[int, dict[str, np.ndarray]]:
        """Every kept step of one run, read from its own row group of its weights part."""
        from grokjax import outdir, storage, weights
        from grokjax.errors import SpecError

        if self.whole is not None:  # read through the results the selection was taken from
            self._run(run_id)
            return self.whole._kept(run_id)
        if run_id not in self._kept_cache:
            run = self._run(run_id)
            directory, index = next(
                (directory, index) for directory, index, runs in zip(
                    self.directories, self._run_indexes, self._selected, strict=True)
                if (runs["run_id"] == run_id).any())
            index.scan()
            part = next(name for name, ids in index.parts.items() if run_id in ids)
            kept = {}
            if storage.exists(outdir.part_path(directory, "weights", part)):
                kept = weights.decode(outdir.read_run_rows(directory, "weights", part, run_id))
            if not kept:
                raise SpecError([f"run {run_id} kept no weights (keep_weights = "
                                 f"{run.get('keep_weights', 'none')!r}): set keep_weights = "
                                 "'float32' (or 'bfloat16') in the sweep to keep them; the runs "
                                 "then get new ids and train again"], "weights")
            self._kept_cache[run_id] = kept
        return self._kept_cache[run_id]

    def __repr__(self) -> str:
        where = f" where {self.selection_text}" if self.selection else ""
        runs = (f"{len(self.runs)} of {len(self.whole.runs)} runs" if self.whole is not None
                else f"{len(self.runs)} runs")
        if len(self.directories) != 1:
            names = [str(d) for d in self.directories]
            return f"Results({names!r}{where}: {runs} pooled)"
        state = "complete" if self.manifest else "incomplete (no _manifest.json yet)"
        rounds = int(self.runs["round"].max()) if len(self.runs) else 0
        earlier = f" (+{len(self.earlier)} of earlier versions)" if len(self.earlier) else ""
        return (f"Results({str(self.directory)!r}{where}: {runs}{earlier}, {rounds} "
                f"round{'s' * (rounds != 1)}, {state})")


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Frames stacked with a fresh index (empty ones left out unless all are)."""
    import pandas as pd

    kept = [frame for frame in frames if len(frame)] or frames[:1]
    return pd.concat(kept, ignore_index=True)


def _varying(runs: pd.DataFrame) -> list[str]:
    """The config columns that take several values among ``runs``, in table order."""
    from grokjax.schema import RUN_CONFIG_DTYPES

    return [column for column in RUN_CONFIG_DTYPES
            if column in runs and runs[column].nunique(dropna=False) > 1]
