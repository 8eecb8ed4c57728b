"""How much memory a new allocation may still take: ``/proc/meminfo``, the process's cgroup (v1 or
v2) and its ancestors, psutil where there is no ``/proc``, and ``torch.cuda.mem_get_info`` on CUDA."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

import torch

from .units import format_bytes

__all__ = ["AvailableMemory", "available_memory"]


@dataclass(frozen=True)
class AvailableMemory:
    """Memory a process may still take (``bytes``) and where the number comes from."""

    bytes: int
    source: str

    def __str__(self) -> str:
        return f"{format_bytes(self.bytes)} ({self.source})"


def _meminfo_available(path: str = "/proc/meminfo") -> Optional[int]:
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_int(path: Path) -> Optional[int]:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _read_stat_field(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key and v.strip().isdigit():
                return int(v)
    except OSError:
        pass
    return 0


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
    best: Optional[AvailableMemory] = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, rel = parts[1], parts[2].lstrip("/")
        if controllers == "":  # v2
            version, top = 2, base
            limit_name, usage_name, stat_key = "memory.max", "memory.current", "inactive_file"
        elif "memory" in controllers.split(","):
            version, top = 1, base / "memory"
            limit_name, usage_name, stat_key = "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"
        else:
            continue
        here = top / rel if rel else top
        dirs = [here] + [p for p in here.parents if top in p.parents or p == top]
        for d in dirs:
            limit = _read_int(d / limit_name)  # "max" (v2, no limit) reads as None
            if limit is None or limit >= 2 ** 60:  # v1 writes a huge number for "no limit"
                continue
            usage = _read_int(d / usage_name)
            if usage is None:
                continue
            usage = max(0, usage - _read_stat_field(d / "memory.stat", stat_key))
            avail = max(0, limit - usage)
            where = "/" + str(d.relative_to(top)) if d != top else "/"
            cand = AvailableMemory(avail, f"cgroup v{version} {where}: limit {format_bytes(limit)} minus "
                                          f"{format_bytes(usage)} in use")
            if best is None or cand.bytes < best.bytes:
                best = cand
    return best


def available_memory(device: Union[str, torch.device] = "cpu") -> Optional[AvailableMemory]:
    """The memory a new allocation may still take on ``device``, or ``None`` when unknown.

    CPU: the smaller of ``MemAvailable`` in ``/proc/meminfo`` (free memory plus reclaimable
    caches, the kernel's own estimate) and the limit of the process's cgroup minus its usage;
    elsewhere ``psutil.virtual_memory().available`` if psutil is installed, else ``None``.
    CUDA (untested here): ``torch.cuda.mem_get_info`` (free bytes on the device)."""
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
