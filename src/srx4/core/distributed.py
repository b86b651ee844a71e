"""DistributedDataParallel set-up: one process per GPU under torchrun, or a single
process without it. `torchrun --nproc_per_node=2 src/train.py ...` on Kaggle's T4 x2."""
import os

import torch
import torch.distributed as dist


def setup(device_type: str):
    """Returns (rank, world_size, local_rank); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return rank, world, local_rank


def agree_values(values, world: int, device) -> list:
    """`values` (floats) summed over the ranks: rank 0 alone contributing a reading
    (its clock) gives every rank that reading. One host sync under DDP: the training
    loop uses it once an epoch and carries the per-step agreements in each step's own
    reduction instead (train/step.py train_step's `share`)."""
    if world <= 1:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def from_rank0(value, world: int):
    """Rank 0's `value` (any picklable object) on every rank: what must be decided once,
    such as the run folder's name (each rank formatting its own time can name another)."""
    if world <= 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value, world: int) -> list:
    """Every rank's `value` (picklable), in rank order, on every rank."""
    if world <= 1:
        return [value]
    shards = [None] * world
    dist.all_gather_object(shards, value)
    return shards


def broadcast_buffers(model, world: int):
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank."""
    if world > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def barrier(world: int):
    if world > 1:
        dist.barrier()


def cleanup(world: int, finished: bool = True):
    """Tear the process group down. After a finished run every rank first meets the others,
    so none destroys its group (and gloo's threads) while a peer is still using it."""
    if world > 1 and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()
