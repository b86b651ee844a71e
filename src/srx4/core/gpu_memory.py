"""How much GPU memory this process may use: the whole card, or `--gpu-memory-gb`.

`limit(gb, index)` caps the caching allocator (train.py --gpu-memory-gb, to rehearse a
16 GB T4 on a bigger card) and records the cap; `free_bytes(device)` is what every
sizing decision reads (device-held training images, tiles, validation batches): the
card's free memory, within the cap less what this process already holds.

A T4 reports 14.7 GiB of total memory and the CUDA context takes about 0.3-0.5 GiB
of it outside the allocator, so a cap of 14 GiB is a T4; 15 GiB is more than one has.
"""
import torch

CONTEXT_BYTES = 512 << 20          # the CUDA context and cuDNN/cuBLAS workspaces, outside the allocator
T4_TOTAL_BYTES = 15_843_721_216    # what torch reports as a T4's total memory (14.76 GiB)

_caps = {}                         # device index -> bytes this process may allocate


def limit(gb: float, device) -> str:
    """Cap this process's allocator on the CUDA `device` at `gb` GiB (0 = no cap). Returns a
    line for the log saying what the cap means on this card."""
    index = device_index(device)
    if not gb:
        _caps.pop(index, None)
        return ""
    total = torch.cuda.get_device_properties(index).total_memory
    cap = int(gb * 2**30)
    usable = total - CONTEXT_BYTES
    if cap > usable:
        cap = usable
        note = (f"--gpu-memory-gb {gb:g} is more than this card leaves after the CUDA context: capped at "
                f"{cap / 2**30:.1f} GiB")
    else:
        note = f"GPU memory capped at {gb:g} GiB of {total / 2**30:.1f} GiB (--gpu-memory-gb)"
    if cap > T4_TOTAL_BYTES - CONTEXT_BYTES:
        note += f"; a T4 has {(T4_TOTAL_BYTES - CONTEXT_BYTES) / 2**30:.1f} GiB for the allocator: use 14 to rehearse one"
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), index)
    _caps[index] = cap
    return note


def cap_bytes(device) -> int:
    """This process's cap on `device` in bytes (0 = none)."""
    device = torch.device(device)
    return _caps.get(device.index if device.index is not None else torch.cuda.current_device(), 0)


def budget(free: int, cap: int, reserved: int, allocated: int) -> int:
    """Bytes a new allocation may take: the card's `free` memory plus the blocks this
    process's allocator holds cached but unused (`reserved - allocated`: reused before the
    card is asked), and within a `cap` (0 = none) what this process has not allocated."""
    available = free + max(reserved - allocated, 0)
    if cap:
        available = min(available, cap - allocated)
    return max(int(available), 0)


def free_bytes(device) -> int:
    """What this process may still allocate on the CUDA `device` (see `budget`)."""
    device = torch.device(device)
    free, _ = torch.cuda.mem_get_info(device)
    return budget(free, cap_bytes(device), torch.cuda.memory_reserved(device), torch.cuda.memory_allocated(device))


def device_index(device) -> int:
    """The GPU index of a resolved CUDA device (`--device cuda:1` is GPU 1 whatever the rank)."""
    device = torch.device(device)
    return device.index if device.index is not None else torch.cuda.current_device()
