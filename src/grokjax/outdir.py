"""The results-directory protocol: names, verified parts, versions, leases, live view.

    <results>/<sweep>/
      runs/runs-<bucket>-<process>-<digest>.parquet       the runs table, a part per batch of
      curves/curves-<...>.parquet                         finished runs (same name in each
      features/features-<...>.parquet                     table); features with diagnostics,
      weights/weights-<...>.parquet                       weights with keep_weights
      _sweep.toml   the effective sweep file (written first)
      _plan.json    the sweep's identity and its earlier versions': marks a grokjax sweep
      _planned_runs.json  the run ids of the sweep as planned (every round so far)
      _versions/<identity>/  an earlier version's sweep file, planned runs and manifest
      _lease-<i>.json   process i is writing (a heartbeat; stale after LEASE_SECONDS)
      _process-<i>.json process i's status and counts;  _manifest.json  when all are done
      _live/curves-<i>.parquet  the curves of process i's runs in flight (while it writes)
      _tmp/         temporaries, renamed into place;  _damaged/  parts that failed verification
      _replaced/<time>/  what --overwrite set aside

A part is trusted only if it verifies: its runs part's footer reads, it belongs to this sweep or
an earlier version of it (its metadata names one of the identities ``_plan.json`` lists), its row
count matches the run ids it records, and its other tables' parts exist with the SHA-256 digests
the runs part records. The runs part is renamed into place last, so it marks its runs as done.
Anything that fails is moved to ``_damaged/`` (never deleted) and its runs are trained again.

A sweep that changes (more seeds, another grid) keeps the directory: its runs are keyed by run
id, so the runs already there are reused, and those it no longer plans stay in place as runs of
an earlier version. ``--overwrite`` sets everything of the earlier sweeps aside in
``_replaced/``. grokjax deletes only its own bookkeeping (leases, temporaries, the live view),
never a part.

Every file operation goes through ``grokjax.storage``, so a local path, ``gs://`` and ``s3://``
follow the same protocol (on an object store a part's single upload is its atomic rename).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import platform
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from grokjax import storage
from grokjax.errors import DirectoryBusy, SpecError, StorageError, SweepIncomplete
from grokjax.storage import Location

TABLES = ("runs", "curves", "features", "weights")
SWEEP_FILE = "_sweep.toml"
PLAN_FILE = "_plan.json"
PLANNED_FILE = "_planned_runs.json"
MANIFEST_FILE = "_manifest.json"
PROCESS_FILE = "_process-{}.json"
LEASE_FILE = "_lease-{}.json"
LIVE_DIR = "_live"  # curves-<process>.parquet: the curves of the process's runs in flight
TMP_DIR = "_tmp"
DAMAGED_DIR = "_damaged"
VERSIONS_DIR = "_versions"  # <identity>/: the files of the version, once superseded
VERSION_FILES = (SWEEP_FILE, PLANNED_FILE, MANIFEST_FILE)
REPLACED_DIR = "_replaced"  # <UTC time>/: what --overwrite set aside
FIGURES_DIR = "_figures"  # grokjax plot; Parquet readers skip names starting with '_'
REPORT_DIR = "_report"  # grokjax report: report.md with its figures beside it
METADATA_KEY = b"grokjax"
# A writer refreshes its lease every LEASE_SECONDS / 4; a lease older than LEASE_SECONDS (or, on
# the same host, one whose process is gone) is stale and may be taken over.
LEASE_SECONDS = 60.0
# Files of a directory that hold no current results: a sweep killed before its plan was
# written (after --overwrite set the earlier results aside, too).
PRE_PLAN = {SWEEP_FILE, TMP_DIR, REPLACED_DIR}
PROBE_PREFIX = "_probe-"  # storage.check_writable's probe, written and removed by any process


def part_path(out_dir: Location, table: str, name: str) -> Location:
    return out_dir / table / f"{table}-{name}.parquet"


# ---------------------------------------------------------------------------------------------
# Atomic writes: temporaries in _tmp/ (never inside a table's directory, where polars and duckdb
# would read them), renamed into place.


def write_bytes(out_dir: Location, path: Location, payload: bytes) -> None:
    storage.write_bytes(path, payload, temporary_dir=out_dir / TMP_DIR)


def write_json(out_dir: Location, path: Location, value: object) -> None:
    write_bytes(out_dir, path, json.dumps(value, indent=2).encode())


def read_json(path: Location) -> dict | None:
    """The JSON object at ``path``; None when it is absent or unreadable (half a file from a
    tool that does not write atomically is treated as absent)."""
    try:
        value = json.loads(storage.read_bytes(path))
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, json.JSONDecodeError,
            UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def parquet_bytes(frame: pd.DataFrame | list[pa.Table], metadata: dict[str, object]) -> bytes:
    """One Parquet file with grokjax's metadata; a list of tables becomes one row group each
    (the weights table: a reader of one run reads its row group alone)."""
    groups = frame if isinstance(frame, list) else [pa.Table.from_pandas(frame,
                                                                         preserve_index=False)]
    schema = groups[0].schema
    schema = schema.with_metadata(
        {**(schema.metadata or {}), METADATA_KEY: json.dumps(metadata).encode()})
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, schema) as writer:
        for group in groups:
            writer.write_table(group)
    return sink.getvalue()


def _digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


# ---------------------------------------------------------------------------------------------
# Whose directory is it?


def _entries(out_dir: Location) -> set[str]:
    return {name for name in storage.listdir(out_dir) if not name.startswith(".")}


def read_plan(out_dir: Location) -> dict | None:
    """``_plan.json``: the sweep's ``identity``, ``scale``, ``stop`` rule and the identities of
    its ``earlier`` versions (absent from directories of older grokjax); None if none."""
    plan = read_json(out_dir / PLAN_FILE)
    return plan if plan and isinstance(plan.get("identity"), str) else None


def trusted_identities(out_dir: Location, identity: str) -> set[str]:
    """The identities whose parts count in a sweep directory: ``identity`` and, when it is the
    directory's current sweep, those of its earlier versions."""
    plan = read_plan(out_dir)
    earlier = plan.get("earlier", []) if plan and plan["identity"] == identity else []
    return {identity, *earlier}


def planned_runs(out_dir: Location) -> set[str] | None:
    """The run ids of the directory's current sweep (every round so far); None when the
    directory does not record them (a directory of older grokjax: every run is current)."""
    plan, planned = read_plan(out_dir), read_json(out_dir / PLANNED_FILE)
    if not (plan and planned and planned.get("identity") == plan["identity"]):
        return None
    return set(planned["run_ids"])


def write_planned_runs(out_dir: Location, identity: str, run_ids: set[str]) -> None:
    write_json(out_dir, out_dir / PLANNED_FILE, {"identity": identity,
                                                 "run_ids": sorted(run_ids)})


def directory_identity(out_dir: Location) -> str | None:
    """The identity of the sweep in ``out_dir``; None when there is nothing of a sweep there.

    Raises when the directory holds files that are not a grokjax sweep's.
    """
    entries = {name for name in _entries(out_dir) if not name.startswith(PROBE_PREFIX)}
    plan = read_plan(out_dir)
    if plan:
        return plan["identity"]
    if entries - PRE_PLAN:
        raise SpecError([f"{out_dir} is not empty and is not a grokjax sweep directory; grokjax "
                         "never writes into (or deletes) other files: choose a new or empty "
                         "directory (--out, or results= in Python)"], "results")
    return None


def live_leases(out_dir: Location, ignore: str | None = None) -> list[dict]:
    """The leases of processes that still write ``out_dir`` (other than token ``ignore``)."""
    live = []
    for name in sorted(_entries(out_dir)):
        if not (name.startswith("_lease-") and name.endswith(".json")):
            continue
        lease = read_json(out_dir / name)
        if lease is None or lease.get("token") == ignore:
            continue
        fresh = time.time() - float(lease.get("heartbeat", 0)) < LEASE_SECONDS
        if lease.get("host") == platform.node():
            fresh = fresh and _process_alive(int(lease.get("pid", -1)))
        if fresh:
            live.append(lease)
    return live


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def _busy_message(out_dir: Location, leases: list[dict], what: str) -> str:
    lease = leases[0]
    return (f"{out_dir} is being written by another grokjax process (host {lease.get('host')}, "
            f"pid {lease.get('pid')}, process {lease.get('process')}, last seen "
            f"{time.time() - float(lease.get('heartbeat', 0)):.0f}s ago); {what}")


def prepare(out_dir: Location, identity: str, sweep_text: str, scale: str, overwrite: bool,
            process: int = 0, stop: str | None = None,
            check_earlier: Callable[[dict], None] = lambda plan: None) -> bool:
    """Make ``out_dir`` this sweep's directory; True if it already was (resume).

    A destination that cannot be written is refused first. A different sweep there becomes an
    earlier version of this one (its parts stay trusted, its files move to ``_versions/``),
    once ``check_earlier`` (given its plan) has not refused it; with ``overwrite`` everything of
    the earlier sweeps is set aside in ``_replaced/`` instead. Either is refused while another
    process writes the directory. The sweep file is written before the plan, so a directory
    with a plan always has its sweep file.
    """
    try:
        storage.check_writable(out_dir)
    except StorageError as err:
        raise SpecError([str(err)], "results") from None
    if process != 0:  # process 0 decides; the others wait for its plan (it may be writing now)
        plan = read_plan(out_dir)
        if plan and plan["identity"] == identity:
            return True
        return _wait_for_replacement(out_dir, identity, process)
    found = directory_identity(out_dir)
    if found == identity:
        return True
    earlier: list[str] = []
    if found is not None:
        leases = live_leases(out_dir)
        if leases:
            what = "--overwrite" if overwrite else "changing the sweep it writes"
            raise DirectoryBusy([_busy_message(out_dir, leases, f"stop it before {what}")],
                                "results")
        if overwrite:
            set_aside_results(out_dir)
        else:
            plan = read_plan(out_dir)
            check_earlier(plan)
            earlier = [i for i in (*plan.get("earlier", []), found) if i != identity]
            for name in VERSION_FILES:
                if storage.exists(out_dir / name):
                    storage.move(out_dir / name, out_dir / VERSIONS_DIR / found / name)
    write_bytes(out_dir, out_dir / SWEEP_FILE, sweep_text.encode())
    write_json(out_dir, out_dir / PLAN_FILE, {"identity": identity, "scale": scale, "stop": stop,
                                              "earlier": earlier})
    return False


def _wait_for_replacement(out_dir: Location, identity: str, process: int,
                          timeout: float = 600.0) -> bool:
    """Processes other than 0 wait for process 0 to (re)write the plan."""
    deadline = time.monotonic() + timeout
    while True:
        plan = read_json(out_dir / PLAN_FILE)
        if plan and plan.get("identity") == identity:
            return False
        if time.monotonic() > deadline:
            raise SweepIncomplete(
                f"process {process}: process 0 did not write this sweep's plan in {out_dir} "
                f"within {timeout:.0f}s; if the processes do not share that directory, give "
                "each host an empty one")
        time.sleep(0.5)


def set_aside_results(out_dir: Location) -> None:
    """Move everything grokjax wrote in a sweep directory (parts, versions, figures, reports,
    plan, status files) into ``_replaced/<UTC time>/``, deleting nothing but its bookkeeping
    (leases, temporaries, the live view); anything else in the directory stays where it is."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    taken, folder, copy = set(storage.listdir(out_dir / REPLACED_DIR)), stamp, 1
    while folder in taken:  # two in one second: never onto what the earlier one set aside
        copy += 1
        folder = f"{stamp}-{copy}"
    target = out_dir / REPLACED_DIR / folder
    for table in TABLES:
        for name in part_names(out_dir, table):
            storage.move(part_path(out_dir, table, name), part_path(target, table, name))
        if out_dir.is_local:
            with contextlib.suppress(OSError):  # not empty: something of the user's is there
                os.rmdir(out_dir / table)
    for name in _entries(out_dir):
        if name.startswith("_lease-") and name.endswith(".json"):
            storage.remove(out_dir / name)
        elif (name.startswith("_process-") and name.endswith(".json")
              or name in (DAMAGED_DIR, VERSIONS_DIR, FIGURES_DIR, REPORT_DIR, *VERSION_FILES,
                          PLAN_FILE)):
            storage.move(out_dir / name, target / name, recursive=True)
    storage.remove(out_dir / LIVE_DIR, recursive=True)
    remove_temporaries(out_dir)


def remove_temporaries(out_dir: Location) -> None:
    storage.remove(out_dir / TMP_DIR, recursive=True)


# ---------------------------------------------------------------------------------------------
# Leases


class Lease:
    """This process's claim on a sweep directory, refreshed by a background heartbeat."""

    def __init__(self, out_dir: Location, process: int):
        self.out_dir, self.process = out_dir, process
        self.path = out_dir / LEASE_FILE.format(process)
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _write(self) -> None:
        write_json(self.out_dir, self.path, {
            "token": self.token, "process": self.process, "host": platform.node(),
            "pid": os.getpid(), "heartbeat": time.time()})

    def _beat(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 4):
            with contextlib.suppress(OSError):
                self._write()

    def __enter__(self) -> Lease:
        mine = [lease for lease in live_leases(self.out_dir)
                if lease.get("process") == self.process]
        if mine:
            raise DirectoryBusy([_busy_message(self.out_dir, mine,
                                               "wait for it to finish, or stop it first")],
                                "results")
        self._write()
        time.sleep(0.05)  # two writers racing for the same lease: the later write wins
        current = read_json(self.path)
        if not current or current.get("token") != self.token:
            raise DirectoryBusy([f"{self.out_dir}: another process took the lease of process "
                                 f"{self.process} at the same moment; run again once it ends"],
                                "results")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        current = read_json(self.path)
        if current and current.get("token") == self.token:
            storage.remove(self.path)


# ---------------------------------------------------------------------------------------------
# Parts


@dataclass
class Part:
    """One batch of finished runs: its tables and the metadata that lets it be verified."""

    name: str
    runs: pd.DataFrame
    curves: pd.DataFrame
    features: pd.DataFrame | None = None
    weights: list[pa.Table] | None = None  # a row group per run (grokjax.weights)


def write_part(out_dir: Location, part: Part, identity: str,
               metadata: dict[str, object]) -> None:
    """The other tables first, the runs part last: it records their digests."""
    record = {"identity": identity, "run_ids": list(part.runs["run_id"]), "digests": {}}
    for table in TABLES[1:]:
        frame = getattr(part, table)
        if frame is None:
            continue
        payload = parquet_bytes(frame, metadata)
        write_bytes(out_dir, part_path(out_dir, table, part.name), payload)
        record["digests"][table] = _digest(payload)
    write_bytes(out_dir, part_path(out_dir, "runs", part.name),
                parquet_bytes(part.runs, metadata | {"part": record}))


@dataclass
class Verified:
    """What the directory holds that can be trusted."""

    run_ids: dict[str, str] = field(default_factory=dict)  # run id -> its part's name
    parts: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)


def _read_record(path: Location) -> tuple[dict, int]:
    """A runs part's record (see ``write_part``) and its row count, from its footer."""
    parquet = pq.ParquetFile(io.BytesIO(storage.read_bytes(path)))
    return json.loads(parquet.schema_arrow.metadata[METADATA_KEY])["part"], \
        parquet.metadata.num_rows


_UNREADABLE = (OSError, pa.ArrowException, KeyError, TypeError, ValueError)


def _part_problem(out_dir: Location, name: str,
                  identities: set[str]) -> tuple[list[str] | None, str | None]:
    """(run ids, None) for a part that verifies, else (None, what is wrong)."""
    try:
        record, rows = _read_record(part_path(out_dir, "runs", name))
    except _UNREADABLE as err:
        return None, f"unreadable runs part ({type(err).__name__})"
    if record.get("identity") not in identities:
        return None, f"belongs to another sweep ({record.get('identity')})"
    run_ids = record.get("run_ids") or []
    if rows != len(run_ids):
        return None, f"{rows} rows for {len(run_ids)} recorded runs"
    for table, digest in record.get("digests", {}).items():
        try:
            payload = storage.read_bytes(part_path(out_dir, table, name))
        except FileNotFoundError:
            return None, f"its {table} part is missing"
        if _digest(payload) != digest:
            return None, f"its {table} part is damaged (digest mismatch)"
    return run_ids, None


class RunIndex:
    """The run ids of the runs parts in a directory (of sweep ``identity`` and its earlier
    versions; of any sweep for None), read from their footers once each (cheap enough to poll
    while other processes write)."""

    def __init__(self, out_dir: Location, identity: str | None):
        self.out_dir = out_dir
        self.identities = None if identity is None else trusted_identities(out_dir, identity)
        self.parts: dict[str, list[str]] = {}

    def scan(self) -> set[str]:
        for name in part_names(self.out_dir, "runs"):
            if name not in self.parts:
                self.parts[name] = _recorded_runs(part_path(self.out_dir, "runs", name),
                                                  self.identities)
        return {run_id for run_ids in self.parts.values() for run_id in run_ids}


def _recorded_runs(path: Location, identities: set[str] | None) -> list[str]:
    try:
        record, _ = _read_record(path)
    except _UNREADABLE:
        return []
    trusted = identities is None or record.get("identity") in identities
    return record.get("run_ids", []) if trusted else []


def part_names(out_dir: Location, table: str) -> list[str]:
    prefix, suffix = f"{table}-", ".parquet"
    return [name[len(prefix):-len(suffix)] for name in storage.listdir(out_dir / table)
            if name.startswith(prefix) and name.endswith(suffix)]


def verify(out_dir: Location, identity: str, quarantine_process: int | None = None,
           quarantine_all: bool = False) -> Verified:
    """Every trusted run of the directory. Parts that fail verification are moved to
    ``_damaged/``: those of process ``quarantine_process`` (each process tidies only its own
    parts, as others may be writing theirs), or all with ``quarantine_all`` (when no process
    writes). Parts of the other tables without a runs part are left-overs of a kill: they are
    set aside the same way."""
    verified = Verified()
    identities = trusted_identities(out_dir, identity)
    runs_parts = part_names(out_dir, "runs")
    for name in runs_parts:
        run_ids, problem = _part_problem(out_dir, name, identities)
        if problem is None and not set(run_ids) & set(verified.run_ids):
            verified.parts.append(name)
            verified.run_ids.update((run_id, name) for run_id in run_ids)
            continue
        verified.damaged.append(name)
        if quarantine_all or _process_of(name) == quarantine_process:
            _set_aside(out_dir, name, problem or "repeats runs of another part")
    orphans = {name for table in TABLES[1:] for name in part_names(out_dir, table)
               if name not in runs_parts}
    for name in sorted(orphans):
        if quarantine_all or _process_of(name) == quarantine_process:
            _set_aside(out_dir, name, "no runs part (its writer was stopped)")
    return verified


def _process_of(name: str) -> int | None:
    """Part names are <bucket>-<process>-<digest>."""
    try:
        return int(name.split("-")[1])
    except (IndexError, ValueError):
        return None


def _set_aside(out_dir: Location, name: str, why: str) -> None:
    for table in TABLES:
        path = part_path(out_dir, table, name)
        if storage.exists(path):
            storage.move(path, out_dir / DAMAGED_DIR / path.name)
    print(f"warning: part {name} in {out_dir} failed verification ({why}); moved to "
          f"{DAMAGED_DIR}/, its runs are trained again", file=sys.stderr, flush=True)


def read_table(out_dir: storage.Where, table: str) -> pd.DataFrame:
    """One table of a sweep directory, local or remote (``pandas.read_parquet(dir/table)``)."""
    return storage.read_parquet_dir(Location(out_dir) / table)


def read_metadata(where: storage.Where) -> dict[str, object]:
    """The provenance stored in the first runs part of a directory (or in one part file)."""
    where = Location(where)
    names = part_names(where, "runs")
    path = part_path(where, "runs", names[0]) if names else where
    parquet = pq.ParquetFile(io.BytesIO(storage.read_bytes(path)))
    metadata = json.loads(parquet.schema_arrow.metadata[METADATA_KEY])
    metadata.pop("part", None)
    return metadata


def has_table(out_dir: storage.Where, table: str) -> bool:
    return bool(part_names(Location(out_dir), table))


def read_run_rows(out_dir: Location, table: str, part: str, run_id: str) -> pa.Table:
    """One run's rows of one part, reading only the row groups that can hold them (for the
    weights table, the run's own; from a bucket, by ranged reads)."""
    fs, path = storage.pyarrow_filesystem(part_path(out_dir, table, part))
    return pq.read_table(path, filesystem=fs, filters=[("run_id", "==", run_id)])


# ---------------------------------------------------------------------------------------------
# The live view: each writing process replaces its file with the curves of its runs in flight.


def live_path(out_dir: Location, process: int) -> Location:
    return out_dir / LIVE_DIR / f"curves-{process}.parquet"


def read_live(out_dir: Location) -> pd.DataFrame | None:
    """The live curves of every process still writing (a killed process's file is ignored);
    None when there are none."""
    frames = []
    for lease in live_leases(out_dir):
        try:
            payload = storage.read_bytes(live_path(out_dir, int(lease.get("process", -1))))
        except FileNotFoundError:  # no run of that process has reached the host yet
            continue
        frames.append(pq.read_table(io.BytesIO(payload)).to_pandas())
    return pd.concat(frames, ignore_index=True) if frames else None
