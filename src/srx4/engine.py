"""The training step, validation and the learning-rate schedule.

- `learning_rate_at(step, ...)`: stateless cosine (or constant) schedule with
  warm-up, a pure function of the global step, so resuming needs no state.
- `train_step(...)`: one optimizer step with AMP on CUDA and one host sync; a
  non-finite loss skips the step and returns None.
- `validate(model, dataset, ...)`: whole-image metrics averaged over images,
  sharded over DDP ranks without padding and summed across them, so the mean
  equals the single-process mean on the same weights.
"""
import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from srx4.infer import super_resolve
from srx4.metrics import all_metrics

METRIC_NAMES = ("psnr", "psnr_y", "ssim", "score")


def learning_rate_at(step: int, total_steps: int, base: float, schedule: str, warmup: int = 0) -> float:
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if schedule == "cosine":
        progress = min(1.0, step / max(1, total_steps))
        return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))
    return base


def loss_fn(name: str):
    return {"l1": F.l1_loss, "mse": F.mse_loss}[name]


def train_step(model, optimizer, scaler, lr_imgs, hr_imgs, loss_name: str, amp_dtype, world: int = 1):
    """One step. lr_imgs (N, 3, p, p), hr_imgs (N, 3, sp, sp): float in [0, 1].
    Returns the loss (the mean over DDP ranks) as a float, or None when it was not
    finite on some rank: then no rank steps.

    The host waits for the GPU once per step, reading the loss after the backward
    pass is queued; nothing else in the step synchronises."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(lr_imgs.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        sr_imgs = model(lr_imgs)                                # (N, 3, sp, sp)
        loss = loss_fn(loss_name)(sr_imgs.float(), hr_imgs)
    (scaler.scale(loss) if scaler is not None else loss).backward()
    reported = loss.detach()
    if world > 1:  # every rank must agree to skip: DDP has already averaged the gradients
        dist.all_reduce(reported)
        reported = reported / world
    value = reported.item()
    if not math.isfinite(value):
        optimizer.zero_grad(set_to_none=True)
        return None
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return value


def to_float(batch_uint8: torch.Tensor, device) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 on device in [0, 1]."""
    return batch_uint8.to(device, non_blocking=True).float().div_(255)


@torch.no_grad()
def validate(model, dataset, device, scale: int, rank=0, world=1, limit: int = 0, amp=True, desc="val"):
    """Mean metrics over the validation images. Returns dict (psnr, psnr_y, ssim, score,
    images, dropped) and the first image's (lr, sr, hr) for pictures."""
    was_training = model.training
    model.eval()
    count = len(dataset) if not limit else min(limit, len(dataset))
    sums = torch.zeros(len(METRIC_NAMES) + 2, dtype=torch.float64, device=device)  # metrics, images, dropped
    first = None
    indices = range(rank, count, world)
    for i in tqdm(indices, desc=desc, leave=False, disable=rank != 0 or len(indices) < 20):
        sample = dataset[i]
        if sample is None:
            sums[-1] += 1
            continue
        _, lr_img, hr_img = sample
        lr = to_float(lr_img[None], device)                  # (1, 3, h, w)
        hr = to_float(hr_img[None], device)                  # (1, 3, sh, sw)
        sr = super_resolve(model, lr, amp=amp).clamp(0, 1)   # (1, 3, sh, sw)
        sr = sr.mul(255).round().div(255)                    # scored as the PNG it would become
        values = all_metrics(sr, hr, scale)
        for k, name in enumerate(METRIC_NAMES):
            sums[k] += values[name]
        sums[-2] += 1
        if first is None and rank == 0:
            first = (lr[0].cpu(), sr[0].cpu(), hr[0].cpu())
    if world > 1:
        dist.all_reduce(sums)
    images = int(sums[-2].item())
    result = {name: (sums[k] / max(images, 1)).item() for k, name in enumerate(METRIC_NAMES)}
    result.update(images=images, dropped=int(sums[-1].item()))
    model.train(was_training)
    return result, first
