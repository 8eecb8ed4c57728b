"""How much memory a new allocation may still take: ``/proc/meminfo``, the process's cgroup (v1 or
v2) and its ancestors, psutil where there is no ``/proc``, and ``torch.cuda.mem_get_info`` on CUDA."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

import torch

from .units import format_bytes

__all__ = ["AvailableMemory", "available_memory"]


@dataclass(frozen=True)
class AvailableMemory:
    """Memory a process may still take (``bytes``) and where the number comes from (``source``,
    in words); ``str()`` gives both, e.g. ``24.00 GB (MemAvailable in /proc/meminfo)``."""

    bytes: int
    source: str

    def __str__(self) -> str:
        return f"{format_bytes(self.bytes)} ({self.source})"


def _meminfo_available(path: str = "/proc/meminfo") -> Optional[int]:
    """``MemAvailable`` of ``path`` in bytes, or ``None`` when it cannot be read."""
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_int(path: Path) -> Optional[int]:
    """The non-negative integer that file ``path`` holds, or ``None`` (unreadable, or ``max``)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _read_stat_field(path: Path, key: str) -> int:
    """The value of ``key`` in a ``memory.stat`` file (``key value`` lines); 0 when absent."""
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key and v.strip().isdigit():
                return int(v)
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class _CgroupVersion:
    """Where a cgroup version keeps the memory controller's files."""

    number: int
    subdir: str  # the memory hierarchy's folder under the cgroup root ("" when it is the root)
    limit: str
    usage: str
    inactive_file: str  # memory.stat's key for the inactive page cache


_CGROUP_V2 = _CgroupVersion(2, "", "memory.max", "memory.current", "inactive_file")
_CGROUP_V1 = _CgroupVersion(1, "memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")


def _memory_cgroup(line: str, base: Path) -> Optional[Tuple[_CgroupVersion, Path, Path]]:
    """The memory hierarchy that a line of ``/proc/self/cgroup`` (``id:controllers:path``) names:
    its version, its root folder under ``base`` and the process's cgroup folder in it; ``None``
    for a line of another controller."""
    parts = line.split(":", 2)
    if len(parts) != 3:
        return None
    controllers, rel = parts[1], parts[2].lstrip("/")
    if controllers == "":  # v2
        version = _CGROUP_V2
    elif "memory" in controllers.split(","):
        version = _CGROUP_V1
    else:
        return None
    top = base / version.subdir if version.subdir else base
    return version, top, (top / rel if rel else top)


def _cgroup_dir_available(d: Path, top: Path, version: _CgroupVersion) -> Optional[AvailableMemory]:
    """The limit of cgroup folder ``d`` minus its usage (less inactive page cache, which the kernel
    reclaims first); ``None`` when it sets no limit or the files are not readable."""
    limit = _read_int(d / version.limit)  # "max" (v2, no limit) reads as None
    if limit is None or limit >= 2 ** 60:  # v1 writes a huge number for "no limit"
        return None
    usage = _read_int(d / version.usage)
    if usage is None:
        return None
    usage = max(0, usage - _read_stat_field(d / "memory.stat", version.inactive_file))
    avail = max(0, limit - usage)
    where = "/" + str(d.relative_to(top)) if d != top else "/"
    return AvailableMemory(avail, f"cgroup v{version.number} {where}: limit {format_bytes(limit)} minus "
                                  f"{format_bytes(usage)} in use")


def _cgroup_available(root: str = "/sys/fs/cgroup",
                      proc_cgroup: str = "/proc/self/cgroup") -> Optional[AvailableMemory]:
    """The tightest memory limit of this process's cgroup and its ancestors, minus their usage
    (less inactive page cache, which the kernel reclaims first). cgroup v2 (``memory.max``,
    ``memory.current``) or v1 (``memory.limit_in_bytes``, ``memory.usage_in_bytes``).
    ``None`` when no limit is set or the files are not readable."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    base = Path(root)
    found: List[AvailableMemory] = []
    for line in lines:
        hierarchy = _memory_cgroup(line, base)
        if hierarchy is None:
            continue
        version, top, here = hierarchy
        for d in [here] + [p for p in here.parents if top in p.parents or p == top]:
            avail = _cgroup_dir_available(d, top, version)
            if avail is not None:
                found.append(avail)
    return min(found, key=lambda a: a.bytes) if found else None


def available_memory(device: Union[str, torch.device] = "cpu") -> Optional[AvailableMemory]:
    """The memory a new allocation may still take on ``device``, or ``None`` when unknown.

    CPU: the smaller of ``MemAvailable`` in ``/proc/meminfo`` (free memory plus reclaimable
    caches, the kernel's own estimate) and the limit of the process's cgroup minus its usage;
    elsewhere ``psutil.virtual_memory().available`` if psutil is installed, else ``None``.
    CUDA (untested here): ``torch.cuda.mem_get_info`` (free bytes on the device).

    Args:
        device: ``"cpu"`` or a CUDA device; any other device type gives ``None``.

    Returns:
        an :class:`AvailableMemory` (bytes and their source), or ``None``.

    Example::

        >>> print(available_memory())      # e.g. 24.00 GB (MemAvailable in /proc/meminfo)
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        free, total = torch.cuda.mem_get_info(dev)
        return AvailableMemory(int(free), f"torch.cuda.mem_get_info({dev}): free of {format_bytes(total)}")
    if dev.type != "cpu":
        return None
    found: List[AvailableMemory] = []
    mem = _meminfo_available()
    if mem is not None:
        found.append(AvailableMemory(mem, "MemAvailable in /proc/meminfo"))
    cg = _cgroup_available()
    if cg is not None:
        found.append(cg)
    if not found:
        try:
            import psutil
        except ImportError:
            return None
        found.append(AvailableMemory(int(psutil.virtual_memory().available), "psutil.virtual_memory().available"))
    return min(found, key=lambda a: a.bytes)
