"""The results-directory protocol: names, verified parts, leases, process status, manifest.

    <results>/<sweep>/
      runs/runs-<bucket>-<process>-<digest>.parquet       the runs table, a part per batch of
      curves/curves-<...>.parquet                         finished runs (same name in each
      features/features-<...>.parquet                     table); features with diagnostics
      _sweep.toml   the effective sweep file (written first)
      _plan.json    the sweep's identity: marks the directory as a grokjax sweep
      _lease-<i>.json   process i is writing (a heartbeat; stale after LEASE_SECONDS)
      _process-<i>.json process i's status and timings;  _manifest.json  when all are done
      _tmp/         temporaries, renamed into place;  _damaged/  parts that failed verification

A part is trusted only if it verifies: its runs part's footer reads, it belongs to this sweep
(its metadata names the sweep's identity), its row count matches the run ids it records, and its
curves and features parts exist with the SHA-256 digests the runs part records. The runs part is
renamed into place last, so it marks its runs as done. Anything that fails is moved to
``_damaged/`` (never deleted) and its runs are trained again. grokjax deletes only files it can
prove it wrote: its own names inside a directory whose ``_plan.json`` it wrote.
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
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from grokjax.spec import SpecError

TABLES = ("runs", "curves", "features")
SWEEP_FILE = "_sweep.toml"
PLAN_FILE = "_plan.json"
MANIFEST_FILE = "_manifest.json"
PROCESS_FILE = "_process-{}.json"
LEASE_FILE = "_lease-{}.json"
TMP_DIR = "_tmp"
DAMAGED_DIR = "_damaged"
METADATA_KEY = b"grokjax"
# A writer refreshes its lease every LEASE_SECONDS / 4; a lease older than LEASE_SECONDS (or, on
# the same host, one whose process is gone) is stale and may be taken over.
LEASE_SECONDS = 60.0
# Files of a directory that hold no results yet: a sweep killed before its plan was written.
PRE_PLAN = {SWEEP_FILE, TMP_DIR}


class DirectoryBusy(SpecError):
    """Another live process writes this sweep (or this directory)."""


def part_path(out_dir: Path, table: str, name: str) -> Path:
    return out_dir / table / f"{table}-{name}.parquet"


# ---------------------------------------------------------------------------------------------
# Atomic writes: a temporary in _tmp/, fsync'd, renamed into place, the directory fsync'd.


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes(out_dir: Path, path: Path, payload: bytes) -> None:
    """Atomically: a reader sees the old file or the whole new one, never a part of it."""
    temporary = out_dir / TMP_DIR / f"{path.name}.{uuid.uuid4().hex}"
    temporary.parent.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(temporary, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def write_json(out_dir: Path, path: Path, value: object) -> None:
    write_bytes(out_dir, path, json.dumps(value, indent=2).encode())


def read_json(path: Path) -> dict | None:
    """The JSON object at ``path``; None when it is absent or unreadable (half a file from a
    tool that does not write atomically is treated as absent)."""
    try:
        value = json.loads(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def parquet_bytes(frame: pd.DataFrame, metadata: dict[str, object]) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(metadata).encode()})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


# ---------------------------------------------------------------------------------------------
# Whose directory is it?


def _entries(out_dir: Path) -> set[str]:
    try:
        return {name for name in os.listdir(out_dir) if not name.startswith(".")}
    except FileNotFoundError:
        return set()
    except NotADirectoryError:
        raise SpecError([f"{out_dir} is a file, not a directory; choose another --out"],
                        "results") from None


def directory_identity(out_dir: Path) -> str | None:
    """The identity of the sweep in ``out_dir``; None when there is nothing of a sweep there.

    Raises when the directory holds files that are not a grokjax sweep's.
    """
    entries = _entries(out_dir)
    plan = read_json(out_dir / PLAN_FILE)
    if plan and isinstance(plan.get("identity"), str):
        return plan["identity"]
    if entries - PRE_PLAN:
        raise SpecError([f"{out_dir} is not empty and is not a grokjax sweep directory; grokjax "
                         "never writes into (or deletes) other files: choose a new or empty "
                         "directory (--out, or results= in Python)"], "results")
    return None


def live_leases(out_dir: Path, ignore: str | None = None) -> list[dict]:
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


def _busy_message(out_dir: Path, leases: list[dict], what: str) -> str:
    lease = leases[0]
    return (f"{out_dir} is being written by another grokjax process (host {lease.get('host')}, "
            f"pid {lease.get('pid')}, process {lease.get('process')}, last seen "
            f"{time.time() - float(lease.get('heartbeat', 0)):.0f}s ago); {what}")


def prepare(out_dir: Path, identity: str, sweep_text: str, scale: str, overwrite: bool,
            process: int = 0) -> bool:
    """Make ``out_dir`` this sweep's directory; True if it already was (resume).

    A different sweep there is refused unless ``overwrite``, which removes grokjax's own files
    only, and is itself refused while another process writes the directory. The sweep file is
    written before the plan, so a directory with a plan always has its sweep file.
    """
    found = directory_identity(out_dir)
    if found == identity:
        return True
    if found is not None:
        if not overwrite:
            raise SpecError([f"{out_dir} holds results of a different sweep (identity {found}, "
                             f"now {identity}); pass --overwrite (overwrite=True in Python) to "
                             "replace them, or --out (results=) to write elsewhere"], "results")
        if process != 0:
            return _wait_for_replacement(out_dir, identity, process)
        leases = live_leases(out_dir)
        if leases:
            raise DirectoryBusy([_busy_message(out_dir, leases, "stop it before --overwrite")],
                                "results")
        remove_own_files(out_dir)
    elif process != 0:
        return _wait_for_replacement(out_dir, identity, process)
    write_bytes(out_dir, out_dir / SWEEP_FILE, sweep_text.encode())
    write_json(out_dir, out_dir / PLAN_FILE, {"identity": identity, "scale": scale})
    return False


def _wait_for_replacement(out_dir: Path, identity: str, process: int,
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


def remove_own_files(out_dir: Path) -> None:
    """Remove what grokjax wrote in a sweep directory, and nothing else."""
    for table in TABLES:
        directory = out_dir / table
        if directory.is_dir():
            for path in directory.glob(f"{table}-*.parquet"):
                path.unlink()
            with contextlib.suppress(OSError):  # not empty: something of the user's is there
                directory.rmdir()
    for name in _entries(out_dir):
        if name.startswith(("_lease-", "_process-")) and name.endswith(".json"):
            (out_dir / name).unlink()
    for name in (MANIFEST_FILE, PLAN_FILE, SWEEP_FILE):
        (out_dir / name).unlink(missing_ok=True)
    remove_temporaries(out_dir)


def remove_temporaries(out_dir: Path) -> None:
    directory = out_dir / TMP_DIR
    if directory.is_dir():
        for path in directory.iterdir():
            path.unlink()
        with contextlib.suppress(OSError):
            directory.rmdir()


class SweepIncomplete(RuntimeError):
    """The processes of a job could not all finish, or process 0 cannot see their parts."""


# ---------------------------------------------------------------------------------------------
# Leases


class Lease:
    """This process's claim on a sweep directory, refreshed by a background heartbeat."""

    def __init__(self, out_dir: Path, process: int):
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
            self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Parts


@dataclass
class Part:
    """One batch of finished runs: its tables and the metadata that lets it be verified."""

    name: str
    runs: pd.DataFrame
    curves: pd.DataFrame
    features: pd.DataFrame | None = None


def write_part(out_dir: Path, part: Part, identity: str, metadata: dict[str, object]) -> None:
    """curves and features first, the runs part last: it records their digests."""
    record = {"identity": identity, "run_ids": list(part.runs["run_id"]), "digests": {}}
    for table, frame in (("curves", part.curves), ("features", part.features)):
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


def _part_problem(out_dir: Path, name: str, identity: str) -> tuple[list[str] | None, str | None]:
    """(run ids, None) for a part that verifies, else (None, what is wrong)."""
    path = part_path(out_dir, "runs", name)
    try:
        parquet = pq.ParquetFile(path)
        record = json.loads(parquet.schema_arrow.metadata[METADATA_KEY])["part"]
        rows = parquet.metadata.num_rows
    except (OSError, pa.ArrowException, KeyError, TypeError, ValueError) as err:
        return None, f"unreadable runs part ({type(err).__name__})"
    if record.get("identity") != identity:
        return None, f"belongs to another sweep ({record.get('identity')})"
    run_ids = record.get("run_ids") or []
    if rows != len(run_ids):
        return None, f"{rows} rows for {len(run_ids)} recorded runs"
    for table, digest in record.get("digests", {}).items():
        try:
            payload = part_path(out_dir, table, name).read_bytes()
        except FileNotFoundError:
            return None, f"its {table} part is missing"
        if _digest(payload) != digest:
            return None, f"its {table} part is damaged (digest mismatch)"
    return run_ids, None


class RunIndex:
    """The run ids of the runs parts in a directory, read from their footers once each (cheap
    enough to poll while other processes write)."""

    def __init__(self, out_dir: Path, identity: str):
        self.out_dir, self.identity = out_dir, identity
        self.parts: dict[str, list[str]] = {}

    def scan(self) -> set[str]:
        for name in part_names(self.out_dir, "runs"):
            if name not in self.parts:
                self.parts[name] = _recorded_runs(part_path(self.out_dir, "runs", name),
                                                  self.identity)
        return {run_id for run_ids in self.parts.values() for run_id in run_ids}


def _recorded_runs(path: Path, identity: str) -> list[str]:
    try:
        record = json.loads(pq.read_schema(path).metadata[METADATA_KEY])["part"]
    except (OSError, pa.ArrowException, KeyError, TypeError, ValueError):
        return []
    return record.get("run_ids", []) if record.get("identity") == identity else []


def part_names(out_dir: Path, table: str) -> list[str]:
    prefix, suffix = f"{table}-", ".parquet"
    directory = out_dir / table
    if not directory.is_dir():
        return []
    return sorted(p.name[len(prefix):-len(suffix)] for p in directory.iterdir()
                  if p.name.startswith(prefix) and p.name.endswith(suffix))


def verify(out_dir: Path, identity: str, quarantine_process: int | None = None,
           quarantine_all: bool = False) -> Verified:
    """Every trusted run of the directory. Parts that fail verification are moved to
    ``_damaged/``: those of process ``quarantine_process`` (each process tidies only its own
    parts, as others may be writing theirs), or all with ``quarantine_all`` (when no process
    writes). Curves and features parts without a runs part are left-overs of a kill: they are
    set aside the same way."""
    verified = Verified()
    runs_parts = part_names(out_dir, "runs")
    for name in runs_parts:
        run_ids, problem = _part_problem(out_dir, name, identity)
        if problem is None and not set(run_ids) & set(verified.run_ids):
            verified.parts.append(name)
            verified.run_ids.update((run_id, name) for run_id in run_ids)
            continue
        verified.damaged.append(name)
        if quarantine_all or _process_of(name) == quarantine_process:
            _set_aside(out_dir, name, problem or "repeats runs of another part")
    orphans = {name for table in ("curves", "features") for name in part_names(out_dir, table)
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


def _set_aside(out_dir: Path, name: str, why: str) -> None:
    destination = out_dir / DAMAGED_DIR
    destination.mkdir(exist_ok=True)
    for table in TABLES:
        path = part_path(out_dir, table, name)
        if path.exists():
            os.replace(path, destination / path.name)
    print(f"warning: part {name} in {out_dir} failed verification ({why}); moved to "
          f"{DAMAGED_DIR}/, its runs are trained again", file=sys.stderr, flush=True)


def read_table(out_dir: str | Path, table: str) -> pd.DataFrame:
    """One table of a sweep directory as pandas reads it (``pandas.read_parquet(dir/table)``)."""
    return pd.read_parquet(Path(out_dir) / table)


def read_metadata(out_dir: str | Path) -> dict[str, object]:
    """The provenance stored in the first runs part of a directory (or in one part file)."""
    path = Path(out_dir)
    if path.is_dir():
        path = part_path(path, "runs", part_names(path, "runs")[0])
    metadata = json.loads(pq.read_schema(path).metadata[METADATA_KEY])
    metadata.pop("part", None)
    return metadata
