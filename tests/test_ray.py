"""Sweeps on a Ray cluster (``grokjax sweep --ray``) against the same sweep in one process.

The cluster is Ray's own multi-node test cluster on 127.0.0.1: a head without CPUs (the driver's
machine) and one-CPU worker nodes, each with its own raylet, so a node can be killed, added or
slowed while a sweep runs. On CPU a run's numbers do not depend on where it ran, so the tables
are compared bitwise. The driver runs as users run it: ``python -m grokjax.cli sweep --ray``.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import write_sweep
from jax.sharding import Mesh
from test_scale import assert_same_tables, check, cli_command, free_port

import grokjax
from grokjax import cli, coordination, outdir, plan, ray_sweep, spec, sweep, tables
from grokjax.chunks import cut

# 32 runs, each about half a second of one core; chunks of 2 runs.
RAY_SWEEP = """
[sweep]
name = "ray"

[fixed]
group = "7"
K = 16
lr = 0.01
test_size = 0.4
steps = 40000
eval_every = 1000

[grid]
weight_decay = [0.0, 1e-3, 1e-2, 3e-2]
seed = [0, 1, 2, 3, 4, 5, 6, 7]
"""
CHUNK_RUNS = 2
TINY_SWEEP_DICT = {"sweep": {"name": "tiny"}, "fixed": {"group": "7", "K": 16, "steps": 40,
                                                        "eval_every": 5},
                   "grid": {"weight_decay": [0.0, 1e-3, 1e-2], "seed": [0, 1, 2]}}
# The cluster's nodes are started by this process once JAX runs in it; they fork and exec at once.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")
TIMEOUT = 600
SLOW_NODE = Path(__file__).parent / "data" / "slow_node"  # its sitecustomize slows the node
NO_GROKJAX = Path(__file__).parent / "data" / "no_grokjax"  # a grokjax that does not import
# Ray's processes on 127.0.0.1 only, quick to declare a frozen node dead, no usage reports.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "1000",
           "RAY_health_check_failure_threshold": "3", "JAX_PLATFORMS": "cpu"}
NODE = {"node_ip_address": "127.0.0.1", "object_store_memory": 80 * 2**20}


class LocalCluster:
    """A head without CPUs and one-CPU nodes, all on 127.0.0.1."""

    def __init__(self, temp: str):
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(initialize_head=True, head_node_args={
            **NODE, "num_cpus": 0, "include_dashboard": False, "temp_dir": temp})
        self.temp = temp
        self.nodes = [self.add() for _ in range(2)]

    @property
    def address(self) -> str:
        return self.cluster.address

    def add(self, **env: str):
        """A one-CPU node; ``env`` is its processes' environment (they inherit its raylet's)."""
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            node = self.cluster.add_node(**NODE, num_cpus=1, temp_dir=self.temp)
        finally:
            for name, value in saved.items():
                os.environ.pop(name) if value is None else os.environ.update({name: value})
        self.cluster.wait_for_nodes()
        return node

    def kill(self, node) -> None:
        """SIGKILL a node's raylet and its workers: a preempted machine."""
        self.cluster.remove_node(node, allow_graceful=False)
        self.nodes.remove(node)

    def restore(self, count: int = 2) -> None:
        while len(self.nodes) < count:
            self.nodes.append(self.add())
        while len(self.nodes) > count:
            self.kill(self.nodes[-1])


@pytest.fixture(scope="module")
def cluster():
    # Ray's sockets live under its temp directory: a short path (a Unix socket's is < 108 bytes).
    temp = tempfile.mkdtemp(prefix="gjray", dir="/tmp")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**RAY_ENV, "RAY_TMPDIR": temp}.items():
            patch.setenv(name, value)  # before Ray is imported: it reads some at import
        pytest.importorskip("ray", reason="the Ray tests need Ray: pip install -e '.[dev]'")
        os.makedirs(os.path.join(temp, "ray"), exist_ok=True)
        local = LocalCluster(temp)
        try:
            yield local
        finally:
            local.cluster.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory) -> Path:
    return write_sweep(tmp_path_factory.mktemp("sweeps"), RAY_SWEEP, "ray.toml")


@pytest.fixture(scope="module")
def reference(sweep_file, tmp_path_factory) -> Path:
    """The same sweep in one process (on one device, as a Ray worker trains)."""
    return Path(sweep.run_sweep(spec.load(sweep_file), out_dir=tmp_path_factory.mktemp("ref")
                                / "ray", progress=False, devices=jax.local_devices()[:1]).out_dir)


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory) -> str:
    """Shared by every worker of the module: only the first ones compile."""
    return str(tmp_path_factory.mktemp("jax-cache"))


def start_driver(cluster, sweep_file, out, compile_cache, *extra) -> subprocess.Popen:
    command = cli_command("sweep", str(sweep_file), "--ray", cluster.address, "--out", str(out),
                          "--no-progress", "--chunk-runs", str(CHUNK_RUNS), "--compile-cache",
                          compile_cache, *extra)
    return subprocess.Popen(command, env={**os.environ, **RAY_ENV}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(driver: subprocess.Popen) -> str:
    output = driver.communicate(timeout=TIMEOUT)[0]
    assert driver.returncode == 0, f"the driver exited {driver.returncode}:\n{output}"
    return output


def wait_for_parts(out: Path, count: int, driver: subprocess.Popen) -> None:
    deadline = time.monotonic() + TIMEOUT
    while len(outdir.part_names(out, "runs")) < count:
        assert driver.poll() is None, f"the driver ended early:\n{driver.communicate()[0]}"
        assert time.monotonic() < deadline, f"fewer than {count} parts in {TIMEOUT}s"
        time.sleep(0.1)


def executions(out: Path) -> list[dict]:
    return json.loads((out / outdir.EXECUTIONS_FILE).read_text())["executions"]


def assert_complete(out: Path, reference: Path) -> None:
    """Bitwise the one-process tables, one copy per run id, the manifest written."""
    assert_same_tables(out, reference)
    manifest = json.loads((out / outdir.MANIFEST_FILE).read_text())
    assert manifest["runs"] == 32 and sorted(manifest["parts"]) == outdir.part_names(out, "runs")
    # no part was damaged; a copy stopped between its curves and its runs leaves a curves part
    assert not list((out / outdir.DAMAGED_DIR).glob("runs-*"))


def idle_fraction(rows: list[dict], node: str) -> float:
    """The share of the makespan (first chunk started → last chunk done) that ``node`` spent
    outside chunk executions (compilation counts as busy)."""
    begin = min(row["start"] for row in rows)
    end = max(row["end"] for row in rows if row["outcome"] == "done")
    busy, reached = 0.0, begin
    for start, stop in sorted((r["start"], r["end"]) for r in rows if r["node"] == node):
        start, stop = max(start, reached), min(stop, end)
        busy += max(0.0, stop - start)
        reached = max(reached, stop)
    return 1 - busy / (end - begin)


@pytest.mark.ray
def test_a_sweep_on_ray_equals_the_sweep_in_one_process(cluster, sweep_file, reference,
                                                        compile_cache, tmp_path):
    out = tmp_path / "ray"
    output = finish(start_driver(cluster, sweep_file, out, compile_cache))
    assert "runs trained 32 on 2 Ray worker(s)" in output
    assert_complete(out, reference)
    rows = executions(out)
    assert {row["node"] for row in rows} == {node.node_id for node in cluster.nodes}
    assert sum(row.get("trained", 0) for row in rows) == 32  # a stopped copy trained none


@pytest.mark.ray
def test_a_node_killed_mid_sweep_loses_nothing(cluster, sweep_file, reference, compile_cache,
                                               tmp_path):
    out = tmp_path / "ray"
    driver = start_driver(cluster, sweep_file, out, compile_cache)
    try:
        wait_for_parts(out, 4, driver)
        survivor, killed_at = cluster.nodes[1].node_id, time.time()
        cluster.kill(cluster.nodes[0])
        finish(driver)
    finally:
        cluster.restore()
    assert_complete(out, reference)
    later = [row for row in executions(out) if row["start"] > killed_at + 1]
    assert later and {row["node"] for row in later} == {survivor}


@pytest.mark.ray
def test_a_node_added_mid_sweep_takes_work(cluster, sweep_file, reference, compile_cache,
                                           tmp_path):
    out = tmp_path / "ray"
    cluster.restore(1)
    driver = start_driver(cluster, sweep_file, out, compile_cache)
    try:
        wait_for_parts(out, 3, driver)
        added = cluster.add()
        cluster.nodes.append(added)
        finish(driver)
    finally:
        cluster.restore()
    assert_complete(out, reference)
    assert any(row["node"] == added.node_id and row["outcome"] == "done"
               for row in executions(out))


@pytest.mark.ray
def test_a_slow_node_leaves_the_fast_one_busy(cluster, sweep_file, reference, compile_cache,
                                              tmp_path):
    """A node 3x slower: the fast node takes more chunks, and once the queue is empty runs a
    backup copy of the slow node's last one; it is idle at most a quarter of the makespan."""
    out = tmp_path / "ray"
    cluster.kill(cluster.nodes[1])
    slow = cluster.add(PYTHONPATH=str(SLOW_NODE), GROKJAX_TEST_SLOWDOWN="3")
    cluster.nodes.append(slow)
    try:
        finish(start_driver(cluster, sweep_file, out, compile_cache))
    finally:
        cluster.kill(slow)
        cluster.restore()
    assert_complete(out, reference)
    rows = executions(out)
    fast = next(row["node"] for row in rows if row["node"] != slow.node_id)
    chunks_by = {node: sum(row["node"] == node and row["outcome"] == "done" for row in rows)
                 for node in (fast, slow.node_id)}
    idle = idle_fraction(rows, fast)
    print(f"fast node idle {idle:.1%} of the makespan; chunks {chunks_by}")
    assert chunks_by[fast] > chunks_by[slow.node_id]
    assert idle <= 0.25


@pytest.mark.ray
def test_the_driver_killed_and_run_again_completes(cluster, sweep_file, reference,
                                                   compile_cache, tmp_path):
    out = tmp_path / "ray"
    driver = start_driver(cluster, sweep_file, out, compile_cache)
    wait_for_parts(out, 6, driver)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    done = len(outdir.read_table(out, "runs"))
    assert not (out / outdir.MANIFEST_FILE).exists() and done < 32
    output = finish(start_driver(cluster, sweep_file, out, compile_cache))
    assert f"skipped (already done) {done}" in output
    assert_complete(out, reference)
    assert outdir._epochs(out, "process-0")[-1] == 2  # the rerun fenced the killed driver


@pytest.mark.ray
def test_an_adaptive_search_on_ray_equals_the_search_in_one_process(cluster, compile_cache,
                                                                    tmp_path):
    """sweeps/ratio.toml on two groups, at a width and length that train in seconds, for three
    rounds."""
    text = (Path(__file__).parents[1] / "sweeps" / "ratio.toml").read_text()
    ratio = write_sweep(tmp_path, text.replace("max_run_steps = 600000\n",
                                               "max_run_steps = 600000\nmax_rounds = 3\n"),
                        "ratio.toml")
    overrides = ["--grid", "group=23,29", "--set", "K=64", "--set", "steps=1500"]
    one = tmp_path / "one"
    check(subprocess.run(cli_command("sweep", str(ratio), "--out", str(one), "--no-progress",
                                     *overrides), capture_output=True, text=True,
                         timeout=TIMEOUT, env={**os.environ, "JAX_PLATFORMS": "cpu"}))
    out = tmp_path / "ray"
    finish(start_driver(cluster, ratio, out, compile_cache, *overrides))
    assert_same_tables(out, one)
    rounds = [json.loads((d / outdir.MANIFEST_FILE).read_text())["rounds"] for d in (out, one)]
    assert rounds[0] == rounds[1] > 1


@pytest.mark.ray
def test_a_cluster_whose_nodes_cannot_run_grokjax_is_refused(cluster, sweep_file,
                                                             compile_cache, tmp_path):
    """Workers that cannot start (here: grokjax missing on the node) are named, exit 2."""
    cluster.restore(0)
    cluster.nodes.append(cluster.add(PYTHONPATH=str(NO_GROKJAX)))
    try:
        driver = start_driver(cluster, sweep_file, tmp_path / "ray", compile_cache)
        output = driver.communicate(timeout=TIMEOUT)[0]
    finally:
        cluster.restore(0)
        cluster.restore()
    assert driver.returncode == 2, output
    assert "no worker starts on the Ray cluster's nodes" in output
    assert "grokjax is not installed on this node" in output and "Traceback" not in output
    assert not (tmp_path / "ray").exists()


@pytest.mark.ray
def test_grokjax_run_on_ray(cluster, compile_cache, tmp_path):
    """From Python, ray= the head's address (True: a Ray on this machine)."""
    results = grokjax.run(TINY_SWEEP_DICT, results=tmp_path, progress=False,
                          ray=cluster.address, chunk_runs=3, compile_cache=compile_cache)
    one = grokjax.run(TINY_SWEEP_DICT, results=tmp_path / "one", progress=False)
    assert_same_tables(results.directory, one.directory)
    assert results.manifest["runs"] == 9


def test_a_head_that_does_not_answer_is_refused_at_once(sweep_file, tmp_path, capsys,
                                                       monkeypatch):
    for name, value in RAY_ENV.items():  # as the cluster's tests need them, were Ray imported
        monkeypatch.setenv(name, value)
    pytest.importorskip("ray", reason="the Ray tests need Ray: pip install -e '.[dev]'")
    port = free_port()
    assert cli.main(["sweep", str(sweep_file), "--ray", f"127.0.0.1:{port}", "--out",
                     str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert f"no Ray head answers at 127.0.0.1:{port}" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_a_chunk_trained_twice_at_once_keeps_one_copy_per_run(sweep_file, reference, tmp_path):
    """Two executions of every chunk racing (a retry and a backup copy): each skips what the
    other committed, a run both committed is set aside as a duplicate, the manifest is written.
    No Ray: the chunk task is a plain function."""
    sweep_spec = spec.load(sweep_file)
    out = tmp_path / "ray"
    first, buckets = sweep.first_plan(sweep_spec, 2**30)
    identity = plan.identity(sweep_spec, [run for _, run in first])
    outdir.prepare(out, identity, sweep_spec.source_text, sweep_spec.scale, False)
    metadata = tables.provenance(sweep_spec.source_text, sweep_spec.scale)
    mesh, programs = Mesh(np.asarray(jax.local_devices()[:1]), ("runs",)), {}
    results = []

    def execute(chunk):
        results.append(ray_sweep.train_chunk(job, chunk.bucket, mesh, programs,
                                             outdir.RunIndex(out, identity)))

    with outdir.Lease(out, 0) as lease:
        job = ray_sweep.Job(str(out), identity, sweep_spec, tables.schema_of(buckets),
                            metadata, lease.fence.epoch, None)
        execute(cut(buckets, lambda _: 1)[0])  # compiles the program the copies share
        for chunk in cut(buckets, lambda _: 4):
            copies = [threading.Thread(target=execute, args=(chunk,)) for _ in range(2)]
            for copy in copies:
                copy.start()
            for copy in copies:
                copy.join()
        execute(cut(buckets, lambda _: 32)[0])  # one more: everything is done
        coordination.write_manifest(out, identity, metadata, 2**30, [],
                                    {run.run_id for _, run in first})
    assert sum(result["trained"] for result in results) >= 32 and results[-1]["trained"] == 0
    assert_complete(out, reference)
