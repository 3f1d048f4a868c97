"""The memory this process may use: the smallest of physical RAM, its cgroup's limit and RLIMIT_AS.

Docker, Kubernetes and Slurm confine a job with a memory cgroup, not a smaller machine: a budget
taken from physical RAM alone lets a job far larger than its limit start, and the kernel then
kills it (SIGKILL, nothing reported, a lease left behind) instead of grokjax refusing it.

cgroup v2: ``memory.max`` of the process's cgroup (``0::/path`` in /proc/self/cgroup) and of
every ancestor up to the cgroup2 mount; inside a cgroup namespace the mount's root (its field in
/proc/self/mountinfo) is a prefix of nothing, so it is stripped. cgroup v1, or a hybrid host
whose v1 memory controller owns memory: ``memory.limit_in_bytes`` along the same walk, where
values near 2**63 mean no limit. RLIMIT_AS counts only when set.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

UNLIMITED = 2**62  # cgroup v1 writes "no limit" as 9223372036854771712


def _limit(path: Path) -> int | None:
    try:
        value = int(path.read_text().strip())  # cgroup v2 writes "max" for none
    except (OSError, ValueError):
        return None
    return value if value < UNLIMITED else None


def _cgroup_mounts(root: Path) -> list[tuple[Path, str, str, list[str]]]:
    """(mount point, root inside the hierarchy, cgroup or cgroup2, super options) per mount."""
    try:
        lines = (root / "proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        fields, _, tail = line.partition(" - ")
        fields, tail = fields.split(), tail.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            mounts.append((root / fields[4].lstrip("/"), fields[3], tail[0], tail[2].split(",")))
    return mounts


def _smallest_along(mount: Path, mount_root: str, cgroup: str, filename: str) -> int | None:
    """The smallest limit in ``filename`` from the cgroup's directory up to the mount point."""
    if mount_root != "/" and cgroup.startswith(mount_root):
        cgroup = cgroup[len(mount_root):]
    directory = mount / cgroup.lstrip("/")
    limits = []
    while True:
        limits.append(_limit(directory / filename))
        if directory == mount or mount not in directory.parents:
            break
        directory = directory.parent
    return min((limit for limit in limits if limit is not None), default=None)


def cgroup_memory_limit(root: str | Path = "/") -> tuple[int | None, str]:
    """(bytes or None, which cgroup) for this process; ``root`` stands for / (tests)."""
    root = Path(root)
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None, "no cgroup"
    v1 = v2 = None
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and not controllers:
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    for point, mount_root, kind, options in _cgroup_mounts(root):
        if v1 is not None and kind == "cgroup" and "memory" in options:
            return _smallest_along(point, mount_root, v1, "memory.limit_in_bytes"), f"cgroup {v1}"
        if v1 is None and v2 is not None and kind == "cgroup2":
            return _smallest_along(point, mount_root, v2, "memory.max"), f"cgroup {v2}"
    return None, "no cgroup"


def process_memory_limit(root: str | Path = "/") -> tuple[int, str]:
    """(bytes, what sets them): physical RAM, a cgroup's memory limit or RLIMIT_AS."""
    candidates = [(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical RAM")]
    cgroup, where = cgroup_memory_limit(root)
    if cgroup is not None:
        candidates.append((cgroup, f"the memory limit of {where}"))
    address_space, _ = resource.getrlimit(resource.RLIMIT_AS)
    if address_space != resource.RLIM_INFINITY:
        candidates.append((address_space, "RLIMIT_AS"))
    return min(candidates)
