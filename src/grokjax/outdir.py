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
      _leases/<scope>/<epoch>.json, .beat   who writes (scope process-<i>), fenced by epochs
      _process-<i>.json process i's status and counts;  _manifest.json  when all are done
      _live/curves-<i>.parquet  the curves of process i's runs in flight (while it writes)
      _tmp/         temporaries, renamed into place;  _damaged/  parts that failed verification
      _duplicates/  parts whose runs another part already holds (a retried or raced writer)
      _replaced/<time>/  what --overwrite set aside

A part's name is ``<bucket>-<writer>-<digest>``, the digest being the SHA-256 of its runs file,
which in turn records the SHA-256 of its other tables' files: every file of a part is verified
by content before it is trusted, together with the sweep's identity (this sweep's or an earlier
version's: one of those ``_plan.json`` lists) and the row count its runs file records. The runs
part is renamed into place last, so it marks its runs as done. A part that fails is moved to
``_damaged/`` (never deleted) and its runs are trained again; a part whose runs another part
already holds is moved to ``_duplicates/``: one copy per run id.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
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
EXECUTIONS_FILE = "_executions.json"  # a Ray sweep: every chunk's executions, where and when
LEASES_DIR = "_leases"
LIVE_DIR = "_live"  # curves-<process>.parquet: the curves of the process's runs in flight
TMP_DIR = "_tmp"
DAMAGED_DIR = "_damaged"
DUPLICATES_DIR = "_duplicates"
VERSIONS_DIR = "_versions"  # <identity>/: the files of the version, once superseded
VERSION_FILES = (SWEEP_FILE, PLANNED_FILE, MANIFEST_FILE)
REPLACED_DIR = "_replaced"  # <UTC time>/: what --overwrite set aside
FIGURES_DIR = "_figures"  # grokjax plot; Parquet readers skip names starting with '_'
REPORT_DIR = "_report"  # grokjax report: report.md with its figures beside it
METADATA_KEY = b"grokjax"
DIGEST_CHARS = 32  # hex digits of the runs file's SHA-256 in a part's name
# A writer refreshes its lease every LEASE_SECONDS / 4; a lease not refreshed for LEASE_SECONDS,
# or one whose process is provably gone, may be taken over.
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
    """The JSON object at ``path``; None when it is absent or malformed (half a file from a tool
    that does not write atomically is treated as absent). A file that exists but cannot be read
    (permissions) is the user's to fix: StorageError."""
    try:
        payload = storage.read_bytes(path)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as err:
        raise StorageError(f"cannot read {path} ({type(err).__name__}); fix its permissions or "
                           "move it out of the directory, then run again") from None
    try:
        value = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
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


def live_leases(out_dir: Location) -> list[dict]:
    """The holders of every scope's current lease that may still write ``out_dir``."""
    live = []
    for scope in storage.listdir(out_dir / LEASES_DIR):
        epochs = _epochs(out_dir, scope)
        holder = _holder(out_dir, scope, epochs[-1]) if epochs else None
        if holder is not None and _live(holder):
            live.append(holder)
    return live


def _busy_message(out_dir: Location, holder: dict, what: str) -> str:
    seen = _number(holder.get("heartbeat"))
    ago = f"{time.time() - seen:.0f}s ago" if seen is not None else "at an unknown time"
    return (f"{out_dir} is being written by another grokjax process (host {holder.get('host')}, "
            f"pid {holder.get('pid')}, process {holder.get('process')}, last seen {ago}); "
            f"{what}")


def prepare(out_dir: Location, identity: str, sweep_text: str, scale: str, overwrite: bool,
            process: int = 0, stop: str | None = None,
            check_earlier: Callable[[dict], None] = lambda plan: None) -> bool:
    """Make ``out_dir`` this sweep's directory; True if it already was (resume).

    A destination that cannot be written is refused first. A different sweep there becomes an
    earlier version of this one (its parts stay trusted, its files move to ``_versions/``),
    once ``check_earlier`` (given its plan) has not refused it; with ``overwrite`` everything of
    the earlier sweeps is set aside in ``_replaced/`` instead. Either is refused while another
    process writes the directory; so is the same sweep recorded at another scale (a damaged or
    edited ``_plan.json``). The sweep file is written before the plan, so a directory
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
        recorded = read_json(out_dir / PLAN_FILE).get("scale")
        if recorded != scale:
            raise SpecError([f"{out_dir / PLAN_FILE} records scale {recorded!r}, but this sweep "
                             f"runs at scale {scale!r}; restore the file's scale, or write "
                             "elsewhere: --out DIR (in Python, results= another root)"],
                            "results")
        return True
    earlier: list[str] = []
    if found is not None:
        leases = live_leases(out_dir)
        if leases:
            what = "--overwrite" if overwrite else "changing the sweep it writes"
            raise DirectoryBusy([_busy_message(out_dir, leases[0], f"stop it before {what}")],
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
        if (name.startswith("_process-") and name.endswith(".json")
                or name in (DAMAGED_DIR, DUPLICATES_DIR, VERSIONS_DIR, FIGURES_DIR, REPORT_DIR,
                            *VERSION_FILES, PLAN_FILE, EXECUTIONS_FILE)):
            storage.move(out_dir / name, target / name, recursive=True)
    storage.remove(out_dir / LEASES_DIR, recursive=True)
    storage.remove(out_dir / LIVE_DIR, recursive=True)
    remove_temporaries(out_dir)


def remove_temporaries(out_dir: Location) -> None:
    storage.remove(out_dir / TMP_DIR, recursive=True)


# ---------------------------------------------------------------------------------------------
# Leases, fenced by epochs. Each scope (``process-<i>``: one process's share; the Ray driver
# holds process-0's) has a sequence of holders:
#
#   _leases/<scope>/<epoch:010d>.json   who holds epoch N: created once, never rewritten
#   _leases/<scope>/<epoch:010d>.beat   its heartbeat, rewritten every LEASE_SECONDS / 4
#
# A claimant creates epoch N+1 with a create-only write (POSIX link, GCS ifGenerationMatch=0,
# S3 If-None-Match): of two racing claimants exactly one wins, where a check-then-write let both
# believe they had won. Before every commit a writer checks that its epoch is still the latest
# (``check_fence``), so a writer that was taken over (paused past LEASE_SECONDS, cut off) stops
# before writing; a commit inside the window between that check and the upload is a complete
# duplicate part, which ``verify`` sets aside.


class LeaseLost(SweepIncomplete):
    """This process may no longer write the directory: another took its lease over."""


def _scope_dir(out_dir: Location, scope: str) -> Location:
    return out_dir / LEASES_DIR / scope


def _epochs(out_dir: Location, scope: str) -> list[int]:
    stems = (name.removesuffix(".json") for name in storage.listdir(_scope_dir(out_dir, scope))
             if name.endswith(".json"))
    return sorted(int(stem) for stem in stems if stem.isdigit())


def _holder(out_dir: Location, scope: str, epoch: int) -> dict | None:
    """Epoch ``epoch``'s holder with its last heartbeat (``heartbeat``; ``released`` once it
    let go); None when its file is malformed."""
    holder = read_json(_scope_dir(out_dir, scope) / f"{epoch:010d}.json")
    if holder is None:
        return None
    beat = read_json(_scope_dir(out_dir, scope) / f"{epoch:010d}.beat") or {}
    return holder | {key: beat[key] for key in ("heartbeat", "released") if key in beat}


def _number(value: object) -> float | None:
    """A number from a file someone else wrote; None for anything else (it proves nothing)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if abs(value) < float("inf") else None


def _started(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot; 0 where there is no /proc), None
    when no such process runs."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return int(file.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        if os.path.isdir("/proc/self"):
            return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return 0


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as file:
            return file.read().strip()
    except OSError:
        return None


def _launch() -> dict:
    """What proves later that this process is gone: its host, boot, pid and the pid's start
    time, and Slurm's job id and restart count (a requeued job keeps its id, counts up, and
    Slurm ends the old incarnation's processes first)."""
    restart = os.environ.get("SLURM_RESTART_COUNT", "0")
    return {"host": platform.node(), "boot": _boot_id(), "pid": os.getpid(),
            "pid_started": _started(os.getpid()), "slurm_job": os.environ.get("SLURM_JOB_ID"),
            "slurm_restart": int(restart) if restart.isdigit() else 0}


def provably_gone(holder: dict) -> bool:
    """True only when ``holder`` cannot be running: a later restart of this Slurm job, or this
    host rebooted, or its pid absent or reused here. Malformed fields prove nothing."""
    me = _launch()
    restart = _number(holder.get("slurm_restart"))
    if (me["slurm_job"] and holder.get("slurm_job") == me["slurm_job"] and restart is not None
            and restart < me["slurm_restart"]):
        return True
    if holder.get("host") != me["host"]:
        return False
    if isinstance(holder.get("boot"), str) and me["boot"] and holder["boot"] != me["boot"]:
        return True
    pid = _number(holder.get("pid"))
    if pid is None or pid != int(pid) or pid <= 0:
        return False
    started = _started(int(pid))
    recorded = _number(holder.get("pid_started"))
    return started is None or started != 0 and recorded not in (None, started)


def _live(holder: dict) -> bool:
    """May this holder still write? Not once it released its lease or is provably gone; else
    while its heartbeat is recent. A heartbeat that is not a number is not recent: a live
    holder rewrites it within LEASE_SECONDS / 4, and a takeover is safe (epochs fence)."""
    if holder.get("released") is True or provably_gone(holder):
        return False
    beat = _number(holder.get("heartbeat"))
    return beat is not None and time.time() - beat < LEASE_SECONDS


@dataclass(frozen=True)
class Fence:
    """The right to commit into ``out_dir`` as the holder of ``scope``'s ``epoch`` (a Lease, or
    a Ray chunk task working under the driver's lease)."""

    out_dir: Location
    scope: str
    epoch: int

    def check(self) -> None:
        """Raise LeaseLost unless ``epoch`` is still the scope's latest and not released."""
        epochs = _epochs(self.out_dir, self.scope)
        latest = epochs[-1] if epochs else self.epoch
        holder = _holder(self.out_dir, self.scope, latest) or {}
        if latest != self.epoch:
            raise LeaseLost(
                f"{self.out_dir}: the lease of {self.scope} was taken over (epoch {latest}, "
                f"host {holder.get('host')}, pid {holder.get('pid')}); this process stops "
                "without writing more, its finished runs are kept")
        if holder.get("released") is True:
            raise LeaseLost(f"{self.out_dir}: the lease of {self.scope} was released (the sweep "
                            "that handed out this work has ended); this process stops without "
                            "writing more")


_FENCES: dict[str, Fence] = {}  # per directory, the fence of the lease this process writes under


@contextlib.contextmanager
def fenced(fence: Fence) -> Iterator[Fence]:
    """Every commit into ``fence.out_dir`` inside this block checks ``fence`` first."""
    key = str(fence.out_dir)
    _FENCES[key] = fence
    try:
        yield fence
    finally:
        _FENCES.pop(key, None)


def check_fence(out_dir: Location) -> None:
    """Before a commit (a runs part, a move aside, the manifest): raise LeaseLost if this
    process no longer holds the lease it writes under (nothing to check without one)."""
    fence = _FENCES.get(str(out_dir))
    if fence is not None:
        fence.check()


class Lease:
    """This process's claim on its share of a sweep directory: epoch N+1 of scope
    ``process-<i>``, refreshed by a background heartbeat, fencing every commit while held."""

    def __init__(self, out_dir: Location, process: int):
        self.out_dir, self.process = out_dir, process
        self.scope = f"process-{process}"
        self.token = uuid.uuid4().hex
        self.fence: Fence | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._fenced = contextlib.ExitStack()

    def _beat_path(self) -> Location:
        return _scope_dir(self.out_dir, self.scope) / f"{self.fence.epoch:010d}.beat"

    def _write_beat(self, **extra: object) -> None:
        # its temporary beside it: the last beat may come after _tmp/ was removed
        storage.write_bytes(self._beat_path(), json.dumps({"heartbeat": time.time(), **extra})
                            .encode())

    def _beat(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 4):
            with contextlib.suppress(OSError, StorageError):
                self._write_beat()

    def __enter__(self) -> Lease:
        epochs = _epochs(self.out_dir, self.scope)
        holder = _holder(self.out_dir, self.scope, epochs[-1]) if epochs else None
        if holder is not None and _live(holder):
            raise DirectoryBusy([_busy_message(self.out_dir, holder,
                                               "wait for it to finish, or stop it first")],
                                "results")
        epoch = (epochs[-1] if epochs else 0) + 1
        path = _scope_dir(self.out_dir, self.scope) / f"{epoch:010d}.json"
        record = {"token": self.token, "process": self.process, "epoch": epoch,
                  "heartbeat": time.time(), **_launch()}
        try:
            storage.create_bytes(path, json.dumps(record, indent=2).encode(),
                                 temporary_dir=self.out_dir / TMP_DIR)
            # A store that ignores create-only writes lets the last claimant win: read back.
            won = (read_json(path) or {}).get("token") == self.token
        except FileExistsError:
            won = False
        if not won:
            raise DirectoryBusy([f"{self.out_dir}: another process took the lease of process "
                                 f"{self.process} at the same moment; run again once it ends"],
                                "results")
        self.fence = Fence(self.out_dir, self.scope, epoch)
        self._write_beat()
        for old in epochs[:-1]:  # the previous holder stays, for messages; the latest fences
            for suffix in (".json", ".beat"):
                storage.remove(_scope_dir(self.out_dir, self.scope) / f"{old:010d}{suffix}")
        self._fenced.enter_context(fenced(self.fence))
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._fenced.close()
        with contextlib.suppress(LeaseLost):
            self.fence.check()
            self._write_beat(released=True)


# ---------------------------------------------------------------------------------------------
# Parts


@dataclass
class Part:
    """One batch of finished runs: its tables and the metadata that lets it be verified.
    ``name`` is ``<bucket>-<writer>``; the written part's name adds its digest."""

    name: str
    runs: pd.DataFrame
    curves: pd.DataFrame
    features: pd.DataFrame | None = None
    weights: list[pa.Table] | None = None  # a row group per run (grokjax.weights)


def write_part(out_dir: Location, part: Part, identity: str,
               metadata: dict[str, object]) -> str:
    """Write a part and return its name.

    The other tables first; the runs part last, the commit: it records their digests and its
    own digest is in the name. The writer's fence is checked before anything is written and
    again before the commit; a writer fenced off there removes what it wrote of the part.
    """
    check_fence(out_dir)
    record = {"identity": identity, "run_ids": list(part.runs["run_id"]), "digests": {}}
    payloads = {}
    for table in TABLES[1:]:
        frame = getattr(part, table)
        if frame is not None:
            payloads[table] = parquet_bytes(frame, metadata)
            record["digests"][table] = _digest(payloads[table])
    runs = parquet_bytes(part.runs, metadata | {"part": record})
    name = f"{part.name}-{_digest(runs)[:DIGEST_CHARS]}"
    written, committed = [], False
    try:
        for table, payload in payloads.items():
            written.append(part_path(out_dir, table, name))
            write_bytes(out_dir, written[-1], payload)
        check_fence(out_dir)
        write_bytes(out_dir, part_path(out_dir, "runs", name), runs)
        committed = True
    finally:
        if not committed:
            for path in written:
                storage.remove(path)
    return name


@dataclass
class Verified:
    """What the directory holds that can be trusted: one part per run id."""

    run_ids: dict[str, str] = field(default_factory=dict)  # run id -> its part's name
    parts: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # parts repeating runs of earlier ones


def _read_record(payload: bytes) -> tuple[dict, int]:
    """A runs part's record (see ``write_part``) and its row count, from its footer."""
    parquet = pq.ParquetFile(io.BytesIO(payload))
    return json.loads(parquet.schema_arrow.metadata[METADATA_KEY])["part"], \
        parquet.metadata.num_rows


_UNREADABLE = (OSError, pa.ArrowException, KeyError, TypeError, ValueError)


def _runs_record(out_dir: Location, name: str) -> tuple[dict | None, int, str | None]:
    """(record, rows, None) for a runs part whose content matches the digest in its name, else
    (None, 0, what is wrong)."""
    try:
        payload = storage.read_bytes(part_path(out_dir, "runs", name))
    except OSError as err:
        return None, 0, f"unreadable runs part ({type(err).__name__})"
    if _digest(payload)[:DIGEST_CHARS] != name.rpartition("-")[2]:
        return None, 0, "its runs part does not match the digest in its name"
    try:
        record, rows = _read_record(payload)
    except _UNREADABLE as err:
        return None, 0, f"unreadable runs part ({type(err).__name__})"
    return record, rows, None


def _part_problem(out_dir: Location, name: str,
                  identities: set[str]) -> tuple[list[str] | None, str | None]:
    """(run ids, None) for a part that verifies, else (None, what is wrong)."""
    record, rows, problem = _runs_record(out_dir, name)
    if problem is not None:
        return None, problem
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
        except OSError as err:
            return None, f"its {table} part is unreadable ({type(err).__name__})"
        if _digest(payload) != digest:
            return None, f"its {table} part is damaged (digest mismatch)"
    return run_ids, None


class RunIndex:
    """The run ids of the runs parts in a directory (of sweep ``identity`` and its earlier
    versions; of any sweep for None), each part read once (cheap enough to poll while other
    processes write)."""

    def __init__(self, out_dir: Location, identity: str | None):
        self.out_dir, self.identity = out_dir, identity
        self.parts: dict[str, list[str]] = {}

    def scan(self) -> set[str]:
        for name in part_names(self.out_dir, "runs"):
            if name not in self.parts:
                record, _, _ = _runs_record(self.out_dir, name)
                trusted = record is not None and (self.identities is None
                                                  or record.get("identity") in self.identities)
                self.parts[name] = record.get("run_ids", []) if trusted else []
        return {run_id for run_ids in self.parts.values() for run_id in run_ids}

    @cached_property
    def identities(self) -> set[str] | None:
        """Read at the first scan, once ``prepare`` has recorded the earlier versions."""
        return None if self.identity is None else trusted_identities(self.out_dir, self.identity)


def part_names(out_dir: Location, table: str) -> list[str]:
    prefix, suffix = f"{table}-", ".parquet"
    return [name[len(prefix):-len(suffix)] for name in storage.listdir(out_dir / table)
            if name.startswith(prefix) and name.endswith(suffix)]


def verify(out_dir: Location, identity: str, quarantine_process: int | None = None,
           quarantine_all: bool = False) -> Verified:
    """Every trusted run of the directory, one part per run id (the first by name).

    Parts that fail verification are moved to ``_damaged/``, parts that repeat runs of an
    earlier part to ``_duplicates/`` (the runs only they hold are first written as a part of
    their own): those of process ``quarantine_process`` (each process tidies only its own parts,
    as others may be writing theirs; process 0 owns the names of no process), or all with
    ``quarantine_all`` (when no process writes). Parts of the other tables without a runs part
    are left-overs of a kill: they are set aside to ``_damaged/`` the same way."""
    verified = Verified()
    identities = trusted_identities(out_dir, identity)
    runs_parts = part_names(out_dir, "runs")
    for name in runs_parts:
        mine = quarantine_all or _process_of(name) == quarantine_process
        run_ids, problem = _part_problem(out_dir, name, identities)
        if problem is not None:
            verified.damaged.append(name)
            if mine:
                _set_aside(out_dir, name, DAMAGED_DIR, f"failed verification ({problem}); its "
                                                       "runs are trained again")
            continue
        new = [run_id for run_id in run_ids if run_id not in verified.run_ids]
        if len(new) < len(run_ids):
            verified.duplicates.append(name)
            if mine:
                repeated = name
                name = _rewrite(out_dir, name, identity, new) if new else None
                _set_aside(out_dir, repeated, DUPLICATES_DIR, "repeats runs of another part: a "
                                                              "retried or raced writer")
            if name is None:
                continue
        verified.parts.append(name)
        verified.run_ids.update((run_id, name) for run_id in new)
    runs_parts = part_names(out_dir, "runs")  # with the parts rewritten above
    orphans = {name for table in TABLES[1:] for name in part_names(out_dir, table)
               if name not in runs_parts}
    for name in sorted(orphans):
        if quarantine_all or _process_of(name) == quarantine_process:
            _set_aside(out_dir, name, DAMAGED_DIR, "no runs part (its writer was stopped)")
    return verified


def _rewrite(out_dir: Location, name: str, identity: str, run_ids: list[str]) -> str:
    """A part holding only ``run_ids`` of part ``name`` (verified), with its provenance."""
    frames, weights = {}, None
    for table in TABLES:
        path = part_path(out_dir, table, name)
        if table != "runs" and not storage.exists(path):
            continue
        payload = io.BytesIO(storage.read_bytes(path))
        if table == "weights":  # a row group per run, as written
            rows = pq.read_table(payload)
            weights = [rows.filter(pc.field("run_id") == run_id) for run_id in run_ids]
            continue
        frame = pd.read_parquet(payload)
        frames[table] = frame[frame["run_id"].isin(run_ids)].reset_index(drop=True)
    metadata = read_metadata(part_path(out_dir, "runs", name))
    part = Part(name.rpartition("-")[0], frames["runs"], frames["curves"], frames.get("features"),
                weights)
    return write_part(out_dir, part, identity, metadata)


def _process_of(name: str) -> int:
    """Part names are <bucket>-<writer>-<digest>; a writer that is not a process index (a Ray
    chunk task, a file named like a part) counts as process 0's, the driver's."""
    writer = name.split("-")[1:2]
    return int(writer[0]) if writer and writer[0].isdigit() else 0


def _set_aside(out_dir: Location, name: str, folder: str, why: str) -> None:
    check_fence(out_dir)
    for table in TABLES:
        path = part_path(out_dir, table, name)
        try:
            if storage.exists(path):
                storage.move(path, out_dir / folder / path.name)
        except OSError as err:
            raise StorageError(f"cannot move {path} to {folder}/ ({type(err).__name__}); fix "
                               "its permissions, or move it out of the directory yourself, "
                               "then run again") from None
    print(f"warning: part {name} in {out_dir} {why}; moved to {folder}/", file=sys.stderr,
          flush=True)


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
