"""How much memory this process may still allocate on the host, and what bounds it.

Four limits can stop an allocation, and the smallest one is the one that counts:

* ``MemAvailable`` of ``/proc/meminfo`` (what the kernel can hand out without swapping);
* a cgroup v2 limit: ``memory.max - memory.current`` of ``/sys/fs/cgroup``;
* a cgroup v1 limit: ``memory.limit_in_bytes - memory.usage_in_bytes`` of ``/sys/fs/cgroup/memory``;
* the address-space limit ``RLIMIT_AS`` (``ulimit -v``) less what the process already maps
  (``VmSize`` of ``/proc/self/status``): allocations past it fail whatever memory is free.

Each reader returns None where its limit is absent or unset, so :func:`host_memory` takes the
minimum of those that apply and names it.
"""

from __future__ import annotations

import os
import resource
from typing import Optional

UNLIMITED = 1 << 60
"""Limits at or above this many bytes (cgroup v1 writes ``9223372036854771712`` for none) are no limit."""


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def _proc_field(path: str, name: str) -> Optional[int]:
    """A ``Name:  123 kB`` line of a /proc file, in bytes; None where absent."""
    text = _read(path)
    for line in (text or "").splitlines():
        if line.startswith(name + ":"):
            try:
                return int(line.split()[1]) * 1024
            except (IndexError, ValueError):
                return None
    return None


def meminfo_available() -> Optional[int]:
    """``MemAvailable`` of /proc/meminfo in bytes (else the free physical pages), or None."""
    avail = _proc_field("/proc/meminfo", "MemAvailable")
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return avail


def _limit_less_usage(limit_path: str, usage_path: str) -> Optional[int]:
    limit, used = _read(limit_path), _read(usage_path)
    if limit is None or used is None or limit.strip() == "max":
        return None
    try:
        lim, use = int(limit.strip()), int(used.strip())
    except ValueError:
        return None
    return None if lim >= UNLIMITED else max(lim - use, 0)


def cgroup_v2_room() -> Optional[int]:
    """``memory.max - memory.current`` of the cgroup v2 hierarchy, or None without a limit."""
    return _limit_less_usage("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current")


def cgroup_v1_room() -> Optional[int]:
    """``memory.limit_in_bytes - memory.usage_in_bytes`` of the cgroup v1 memory controller, or None
    without a limit."""
    return _limit_less_usage("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                             "/sys/fs/cgroup/memory/memory.usage_in_bytes")


def address_space_room() -> Optional[int]:
    """``RLIMIT_AS`` (the soft limit, ``ulimit -v``) less the process's ``VmSize``, or None without a
    limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft < 0 or soft >= UNLIMITED:
        return None
    mapped = _proc_field("/proc/self/status", "VmSize") or 0
    return max(int(soft) - mapped, 0)


SOURCES = {
    "MemAvailable": meminfo_available,
    "the cgroup memory limit (memory.max)": cgroup_v2_room,
    "the cgroup memory limit (memory.limit_in_bytes)": cgroup_v1_room,
    "the address-space limit RLIMIT_AS (ulimit -v) less what the process maps": address_space_room,
}
"""Name -> reader of every host memory limit; :func:`host_memory` looks each up here at call time."""


def human(n: float) -> str:
    """Bytes in decimal units: ``1.2 GB``."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB", "EB", "ZB"):
        if abs(n) < 1000 or unit == "ZB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} ZB"  # pragma: no cover


def host_memory() -> tuple[int, str]:
    """Bytes this process may still allocate on the host, and the name of the limit that sets the
    number: the smallest of :data:`SOURCES` that applies (``1 << 62`` and "no known limit" where
    none does)."""
    rooms = {name: read() for name, read in SOURCES.items()}
    rooms = {name: int(v) for name, v in rooms.items() if v is not None}
    if not rooms:
        return 1 << 62, "no known limit"
    name = min(rooms, key=rooms.get)
    return rooms[name], name


__all__ = ["host_memory", "human", "meminfo_available", "cgroup_v2_room", "cgroup_v1_room", "address_space_room",
           "SOURCES"]
