"""Helpers shared by the benchmark scripts: paths, the sample frames, a timer."""
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
SAMPLES = REPO.parent / "shared" / "samples" / "gnr638"


def sample_dir(arg: str) -> Path:
    """The GNR638 sample pairs (lr/, hr/): --samples, ../shared, or a carried copy in .gpu/."""
    for candidate in [Path(arg)] if arg else [SAMPLES, REPO / ".gpu" / "samples" / "gnr638"]:
        if (candidate / "lr").is_dir():
            return candidate
    raise SystemExit("GNR638 samples not found: pass --samples DIR (with lr/ and hr/)")


def timed(fn, repeats: int = 1, sync=None):
    """Best wall time of `repeats` calls (after one warm-up call), and the last result."""
    result = fn()
    best = float("inf")
    for _ in range(repeats):
        if sync:
            sync()
        start = time.perf_counter()
        result = fn()
        if sync:
            sync()
        best = min(best, time.perf_counter() - start)
    return best, result


def free_port() -> int:
    """A TCP port free now, for torchrun's rendezvous."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> str:
    import os
    import platform

    import torch
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"
