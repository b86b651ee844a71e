"""What this machine offers: the device, the mixed-precision dtype it runs
natively (CUDA compute capability, a CPU's bf16 flags) and its free RAM.
"""
import functools
import os
from pathlib import Path

import torch

from srx4.core.errors import FlagError


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> the GPU when there is one, else the CPU; 'cuda' -> this process's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    return torch.device(name)


AMP_DTYPES = ["auto", "bf16", "fp16"]


def amp_dtype_for(capability) -> torch.dtype:
    """bf16 only from compute capability 8.0 (Ampere) on, where cuDNN has bf16 convolutions;
    fp16 (with a GradScaler when training) before, e.g. on Kaggle's T4 (7.5).
    `torch.cuda.is_bf16_supported()` is not used: it says True on a T4 (emulation)."""
    return torch.bfloat16 if tuple(capability) >= (8, 0) else torch.float16


def autocast_dtype(device: torch.device, choice: str = "auto"):
    """The autocast dtype for `device`: None on CPU (fp32); on CUDA `choice` (bf16 or
    fp16) or, for auto, what the GPU's compute capability runs natively."""
    if device.type != "cuda":
        return None
    if choice not in AMP_DTYPES:
        raise FlagError(f"--amp-dtype {choice!r}: expected one of {', '.join(AMP_DTYPES)}")
    if choice != "auto":
        return {"bf16": torch.bfloat16, "fp16": torch.float16}[choice]
    return amp_dtype_for(torch.cuda.get_device_capability(device))


def training_dtype(device: torch.device, choice: str = "auto"):
    """The autocast dtype of training steps: on CUDA `autocast_dtype`; on a CPU fp32 (None)
    unless bf16 or fp16 is asked for (fp16 with GradScaler("cpu"): the T4's step code,
    rehearsed where no GPU is)."""
    if device.type == "cuda":
        return autocast_dtype(device, choice)
    if choice not in AMP_DTYPES:
        raise FlagError(f"--amp-dtype {choice!r}: expected one of {', '.join(AMP_DTYPES)}")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(choice)


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


def inference_dtype(device: torch.device, choice: str = "auto"):
    """The autocast dtype for running a model (predict, validation): on CUDA as
    `autocast_dtype`; on a CPU bf16 where it is native (auto) or asked for (bf16),
    else None (fp32). Training on a CPU stays fp32."""
    if device.type == "cuda":
        return autocast_dtype(device, choice)
    if choice not in AMP_DTYPES:
        raise FlagError(f"--amp-dtype {choice!r}: expected one of {', '.join(AMP_DTYPES)}")
    return torch.bfloat16 if choice == "bf16" or (choice == "auto" and cpu_has_bf16()) else None


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
