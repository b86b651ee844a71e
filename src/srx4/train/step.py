"""The training step, the learning-rate schedule and the BatchNorm refresh.

- `learning_rate_at(step, ...)`: stateless cosine (or constant) schedule with
  warm-up, a pure function of the position (in steps of one process's batch,
  so the same for any number of DDP ranks) or, under --time-limit, of the
  share of the time budget used, whichever is further: a run stopped by the
  clock ends annealed.
- `train_step(...)`: one optimizer step with AMP (CUDA, or CPU bf16/fp16) and one
  host sync; a non-finite loss or fp16 gradient skips the step on every rank.
(Validation: srx4.train.validate.)
"""
import contextlib
import math
from typing import NamedTuple, Optional

import torch
import torch.distributed as dist

from srx4.train.losses import loss_fn


def schedule_position(samples_seen: int, batch_size: int) -> float:
    """Where the schedule stands, in one process's steps: a function of the samples seen, so
    a run resumed with another number of processes (each step then takes batch x world
    samples) goes on at the same rate."""
    return samples_seen / batch_size


def learning_rate_at(step: float, total_steps: float, base: float, schedule: str, warmup: int = 0,
                     time_share: float = 0.0) -> float:
    """The rate at `step` of `total_steps`; `time_share` (elapsed / --time-limit) moves the
    run on when the clock runs out before the steps do: the warm-up (its steps are a share of
    the run, ended by the clock too) and the cosine both follow whichever is further."""
    progress = min(1.0, max(step / max(1, total_steps), time_share))
    done = max(step, progress * total_steps)      # steps, or the steps the clock's share stands for
    if warmup and done < warmup:
        return base * (done + 1) / warmup
    if schedule == "cosine":
        return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))
    return base


class Step(NamedTuple):
    """What `train_step` did: `loss` (the mean over DDP ranks; None = the step was skipped),
    `why` it was skipped ("" / "loss": not finite / "gradients": a gradient not finite;
    in fp16 the GradScaler has lowered its scale) and `shared`: the loop's `share` values summed over
    the ranks, from the same reduction as the loss."""
    loss: Optional[float]
    why: str
    shared: list


class BatchNormGuard:
    """Keeps the BatchNorm running statistics from before a step's forward pass, to put
    back when the step is skipped: a forward that overflowed must not leave inf/NaN
    statistics for validation. Two small copies per step."""

    def __init__(self, model):
        norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                 and m.track_running_stats]
        self.live = [t for m in norms for t in (m.running_mean, m.running_var)]
        self.saved = [t.clone() for t in self.live]

    def save(self):
        if self.live:
            torch._foreach_copy_(self.saved, self.live)

    def restore(self):
        if self.live:
            torch._foreach_copy_(self.live, self.saved)


_pinned = {}


def _shared_on(device, share) -> torch.Tensor:
    """`share` (host floats) on `device`: on a GPU through a pinned buffer kept across steps, an
    asynchronous copy (the step's one sync, .tolist(), has finished the previous one)."""
    if torch.device(device).type != "cuda":
        return torch.tensor(list(share), dtype=torch.float32)
    buffer = _pinned.get(len(share))
    if buffer is None:
        buffer = _pinned[len(share)] = torch.empty(len(share), dtype=torch.float32, pin_memory=True)
    buffer.copy_(torch.tensor(list(share), dtype=torch.float32))
    return buffer.to(device, non_blocking=True)


def train_step(model, optimizer, scaler, lr_imgs, hr_imgs, criterion, amp_dtype, world: int = 1, micro: int = 1,
               share=(), guard: BatchNormGuard = None) -> Step:
    """One step. lr_imgs (N, 3, p, p), hr_imgs (N, 3, sp, sp): float in [0, 1]; criterion
    (sr, hr) -> loss (srx4.losses; a name there is accepted too). micro > 1 splits the batch
    into that many micro-batches whose gradients add up to the whole batch's (memory / micro;
    under DDP only the last one communicates). scaler: a GradScaler for fp16 (CUDA or CPU).

    No rank steps when the loss or, after unscaling, a gradient is not finite on any rank
    (the scaler then lowers its scale, the optimizer and `guard`'s BatchNorm statistics stay
    as they were). `share`: floats every rank adds to the step's one reduction (the loop
    agrees on its clock and the next batch there), returned summed in Step.shared.

    The host waits for the device once per step, on that reduction, after the backward
    pass is queued; nothing else in the step synchronises."""
    criterion = loss_fn(criterion) if isinstance(criterion, str) else criterion
    optimizer.zero_grad(set_to_none=True)
    if guard is not None:
        guard.save()
    chunks = list(zip(lr_imgs.chunk(micro), hr_imgs.chunk(micro))) if micro > 1 else [(lr_imgs, hr_imgs)]
    loss = 0.0
    for k, (lr_part, hr_part) in enumerate(chunks):
        quiet = model.no_sync() if world > 1 and k < len(chunks) - 1 else contextlib.nullcontext()
        with quiet:
            with torch.autocast(lr_imgs.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                sr_part = model(lr_part)                                # (n, 3, sp, sp)
                part = criterion(sr_part.float(), hr_part) * (lr_part.shape[0] / lr_imgs.shape[0])
            (scaler.scale(part) if scaler is not None else part).backward()
        loss = loss + part.detach()
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if scaler is not None:
        scaler.unscale_(optimizer)           # the gradients as they are; records the overflow for update()
    # one number that is finite exactly when every gradient is (DDP has averaged them: the same on every rank)
    grad_check = torch.stack(torch._foreach_norm(grads)).sum() if grads else torch.zeros((), device=lr_imgs.device)
    values = torch.cat([loss.reshape(1).float(), (~torch.isfinite(grad_check)).reshape(1).float(),
                        _shared_on(lr_imgs.device, share)])
    if world > 1:
        dist.all_reduce(values)
    values = values.tolist()                                 # the one host sync
    mean_loss, overflow, shared = values[0] / world, values[1] > 0, values[2:]
    why = "loss" if not math.isfinite(mean_loss) else "gradients" if overflow else ""
    if why:
        optimizer.zero_grad(set_to_none=True)
        if guard is not None:
            guard.restore()
    else:
        optimizer.step()                     # unscaled already: the scaler's step would only re-check
    if scaler is not None:
        scaler.update()                      # lowers the scale after an overflow, grows it after a good run
    return Step(None if why else mean_loss, why, shared)


@torch.no_grad()
def refresh_batchnorm(model, batches, amp_dtype=None, channels_last=False) -> int:
    """Recompute every BatchNorm's running mean and variance as the plain average over
    `batches` (LR tensors) in training mode, with the current weights: the running
    statistics kept during training lag the weights (momentum 0.1), which after few
    steps makes eval mode differ from training. Returns the batches used (0 = left as is)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
             for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None                      # cumulative average over the refresh batches
    was_training = model.training
    model.train()
    used = 0
    for lr_imgs in batches:
        if channels_last:
            lr_imgs = lr_imgs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(lr_imgs.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            model(lr_imgs)
        used += 1
    for m, (mean, var, tracked, momentum) in zip(norms, saved):
        m.momentum = momentum
        if not used:
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(tracked)
    model.train(was_training)
    return used




def out_of_memory_line(rank: int, world: int, device, batch: int, patch: int, scale: int, dtype: str,
                       micro: int) -> str:
    """The one line a training step's out-of-memory error becomes: which rank and GPU, the
    step's size, the memory in use, and what to lower."""
    used = ""
    if torch.device(device).type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        used = f"; {torch.cuda.max_memory_allocated(device) / 2**30:.1f} of {total / 2**30:.1f} GiB at the peak"
    who = f"rank {rank} of {world} ({device})" if world > 1 else str(device)
    return (f"{who}: out of GPU memory in a training step: batch {batch} of {patch} px LR patches "
            f"({patch * scale} px HR), {dtype}, {micro} micro-batch(es){used}: lower --batch-size or "
            f"--patch-size, raise --grad-accum, or add --activation-checkpointing")
