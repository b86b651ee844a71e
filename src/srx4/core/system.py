"""What this machine offers: the device, whether its CPU computes bf16 natively (the
precision decision itself is core/precision.py) and its free RAM.
"""
import functools
import os
from pathlib import Path

import torch


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> the GPU when there is one, else the CPU; 'cuda' -> this process's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    return torch.device(name)


def cpu_flags_have_bf16(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo text lists native bf16 arithmetic (avx512_bf16 or AMX)."""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """This CPU computes bf16 natively (SRX4_CPU_BF16=0/1 overrides the reading)."""
    forced = os.environ.get("SRX4_CPU_BF16", "")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return cpu_flags_have_bf16(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


def available_ram_bytes(meminfo: str = None) -> int:
    """RAM a process can still take: Linux's MemAvailable (free pages plus the page cache and
    other memory the kernel gives back on demand); elsewhere the free pages. The free pages
    alone read a few GB on a box whose page cache holds what it read (a Kaggle session after
    decoding the data, a machine running two test suites) and would shrink every budget."""
    try:
        text = Path("/proc/meminfo").read_text() if meminfo is None else meminfo
        for line in text.splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30
