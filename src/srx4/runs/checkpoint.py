"""last.ckpt: everything a run needs to continue exactly where it stopped.

A plain dict of tensors and Python values (RNG states as tensors), so
`torch.load(weights_only=True)` reads it; written atomically.
"""
import io
import random
from pathlib import Path

import numpy as np
import torch

from srx4.core.io import atomic_write_bytes
from srx4.models.weights import WeightsError


def rng_state() -> dict:
    """The host RNG states as tensors (weights_only-safe). No GPU states: crops and flips
    are a hash of (seed, epoch, index), nothing in training draws from the CUDA RNG, and
    a checkpoint of two GPUs must resume on one."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_pos": int(np_state[2]),
            "python": torch.tensor(random.getstate()[1], dtype=torch.int64)}


def set_rng_state(state: dict):
    """Restore what `rng_state` saved; GPU states of older checkpoints are ignored."""
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "numpy_keys" in state:
        np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    if "python" in state:
        random.setstate((3, tuple(int(v) for v in state["python"].tolist()), None))


def save_checkpoint(path, checkpoint: dict):
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(f"{path}: not a readable checkpoint ({err.__class__.__name__}: "
                           f"{str(err).splitlines()[0][:120]})") from None
