"""The process's memory limit (cgroup v2, v1, hybrid, RLIMIT_AS) and the CPU budget it sets."""

import resource

from helpers import write_sweep

from grokjax import cli, memlimit, plan, spec

V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
UNLIMITED_V1 = "9223372036854771712\n"  # what cgroup v1 writes for no limit


def tree(root, files: dict):
    """A fake / under ``root``: /proc/self/{cgroup,mountinfo} and the cgroup files."""
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def v2_tree(root, limit: str):
    return tree(root, {"proc/self/cgroup": "0::/job\n", "proc/self/mountinfo": V2_MOUNT,
                       "sys/fs/cgroup/job/memory.max": limit})


def test_v2_takes_the_tightest_limit_of_the_cgroup_and_its_ancestors(tmp_path):
    root = tree(tmp_path, {
        "proc/self/cgroup": "0::/user.slice/job\n",
        "proc/self/mountinfo": V2_MOUNT,
        "sys/fs/cgroup/user.slice/job/memory.max": "max\n",
        "sys/fs/cgroup/user.slice/memory.max": "4294967296\n",
    })
    assert memlimit.cgroup_memory_limit(root) == (4294967296, "cgroup /user.slice/job")


def test_v2_in_a_cgroup_namespace_strips_the_mount_root(tmp_path):
    # In a container the mount's root is the container's own cgroup.
    root = tree(tmp_path, {
        "proc/self/cgroup": "0::/docker/abc\n",
        "proc/self/mountinfo": "30 23 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n",
        "sys/fs/cgroup/memory.max": "2147483648\n",
    })
    assert memlimit.cgroup_memory_limit(root)[0] == 2147483648


def test_v1_memory_controller_on_a_hybrid_host(tmp_path):
    # As on this project's machines: v1 memory controller, a cgroup2 'unified' mount beside it.
    root = tree(tmp_path, {
        "proc/self/cgroup": "4:memory:/process_api/96f8\n1:cpu:/\n0::/\n",
        "proc/self/mountinfo": (
            "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
            "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"),
        "sys/fs/cgroup/memory/process_api/96f8/memory.limit_in_bytes": "8589934592\n",
        "sys/fs/cgroup/memory/memory.limit_in_bytes": UNLIMITED_V1,
    })
    assert memlimit.cgroup_memory_limit(root) == (8589934592, "cgroup /process_api/96f8")


def test_no_limit_anywhere(tmp_path):
    assert memlimit.cgroup_memory_limit(v2_tree(tmp_path / "v2", "max\n"))[0] is None
    v1 = tree(tmp_path / "v1", {
        "proc/self/cgroup": "4:memory:/\n",
        "proc/self/mountinfo": "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        "sys/fs/cgroup/memory/memory.limit_in_bytes": UNLIMITED_V1})
    assert memlimit.cgroup_memory_limit(v1)[0] is None
    assert memlimit.cgroup_memory_limit(tmp_path / "empty")[0] is None
    limit, source = memlimit.process_memory_limit(tmp_path / "empty")
    assert source == "physical RAM" and limit > 2**28


def test_the_process_limit_is_the_smallest(tmp_path, monkeypatch):
    root = v2_tree(tmp_path, "1073741824\n")
    assert memlimit.process_memory_limit(root) == (2**30, "the memory limit of cgroup /job")
    monkeypatch.setattr(resource, "getrlimit", lambda which: (2**29, resource.RLIM_INFINITY))
    assert memlimit.process_memory_limit(root) == (2**29, "RLIMIT_AS")


# About 2.5 GiB by the planner's estimate: within the default budget of a 2-core host with 24 GiB
# of RAM (a quarter of it, 3 GiB per device), far over that of a 1 GiB memory cgroup.
BIG_RUN = """
[fixed]
group = "127"
K = 7680
steps = 10
eval_every = 10
"""


def test_a_run_larger_than_the_cgroup_limit_is_refused_with_exit_2(tmp_path, monkeypatch,
                                                                   capsys):
    """In a 1 GiB memory cgroup (Docker, Kubernetes, Slurm) the default budget follows the
    cgroup, not the host's RAM: the run is refused before anything is written, instead of
    being killed by the kernel mid-sweep."""
    estimate = plan.bytes_per_run(plan.plan_runs(spec.parse(BIG_RUN))[0])
    assert 2.25 * 2**30 < estimate < 2.75 * 2**30
    fake_root = v2_tree(tmp_path / "root", f"{2**30}\n")
    real = memlimit.process_memory_limit
    monkeypatch.setattr(memlimit, "process_memory_limit", lambda: real(fake_root))
    out = tmp_path / "results" / "big"
    assert cli.main(["sweep", str(write_sweep(tmp_path, BIG_RUN)), "--out", str(out),
                     "--no-progress"]) == 2
    assert "more than the memory budget" in capsys.readouterr().err
    assert not out.exists()
