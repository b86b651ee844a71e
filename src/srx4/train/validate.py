"""Validation: whole-image metrics averaged over images.

`validate(model, dataset, ...)`: same-size images batched, metrics accumulated on
the device (float32 on a GPU), sharded over DDP ranks without padding and summed
across them, so the mean equals the single-process mean on the same weights; one
host sync (and one a batch in reduced precision, below).

In reduced precision (a T4's fp16) an image whose output is not finite is run again in
fp32, as predict.py does (predict/folder.py `repair_non_finite`); one still not finite
scores NaN, never clamped into valid pixels, and the epoch's figures say NaN.
"""
import functools
import sys

import torch
import torch.distributed as dist

from srx4.core.progress import progress
from srx4.image.codec import to_float
from srx4.image.scoring import VALIDATION_COLUMNS as METRIC_NAMES, Validation, validation_metrics
from srx4.predict.folder import repair_non_finite
from srx4.predict.inference import super_resolve


def size_batches(indices, size_of, batch_size: int):
    """Consecutive runs of `indices` whose images have one size, at most batch_size long."""
    batch = []
    for i in indices:
        if batch and (size_of(i) != size_of(batch[0]) or len(batch) == batch_size):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


@torch.no_grad()
def validate(model, dataset, device, scale: int, rank=0, world=1, indices=None, amp=True, amp_dtype="auto",
             desc="val", batch_size: int = 0, quiet: bool = False) -> Validation:
    """The mean metrics over the validation images `indices` (default: all) as a
    `Validation` (srx4.image.scoring), with every image's figures (all ranks') and the first
    image's (lr, sr, hr) on the CPU for pictures (rank 0). Metrics in float32 (within 1e-4 dB
    of float64; 7x faster on a CPU, and float64 runs at 1/32 rate on a T4)."""
    was_training = model.training
    model.eval()
    indices = list(range(len(dataset))) if indices is None else list(indices)
    cuda = torch.device(device).type == "cuda"
    metric_dtype = torch.float32
    batch_size = batch_size or (4 if cuda else 1)
    sums = torch.zeros(len(METRIC_NAMES) + 2, dtype=torch.float64, device=device)  # metrics, images, dropped
    first, scored, names = None, [], []
    mine = indices[rank::world]
    bar = progress(total=len(mine), desc=desc, unit="img", leave=False, quiet=quiet or rank != 0 or len(mine) < 20)
    for batch in size_batches(mine, dataset.lr_size, batch_size):
        samples = [dataset[i] for i in batch]
        kept = [s for s in samples if s is not None]
        sums[-1] += len(samples) - len(kept)
        bar.update(len(batch))
        if not kept:
            continue
        lr = to_float(torch.stack([s[1] for s in kept]), device)             # (n, 3, h, w)
        hr = to_float(torch.stack([s[2] for s in kept]), device)             # (n, 3, sh, sw)
        run = functools.partial(super_resolve, model, amp_dtype=amp_dtype)
        sr = run(lr, amp=amp)                                                   # (n, 3, sh, sw)
        if amp:     # fp16 overflows to inf: retried in fp32 (a host sync a batch, in reduced precision only)
            sr, broken = repair_non_finite(sr, lr, [s[0] for s in kept], run, amp)
            if any(broken):
                sr[torch.tensor(broken, device=sr.device)] = float("nan")      # scored NaN, not clamped
                print(f"warning: {desc}: {sum(broken)} image(s) not finite even in fp32: this validation's "
                      f"figures are NaN", file=sys.stderr, flush=True)
        sr = sr.clamp(0, 1).mul(255).round().div(255)                # scored as the PNG it would become
        per_image = validation_metrics(sr, hr, scale, metric_dtype)          # (n, metrics)
        sums[:len(METRIC_NAMES)] += per_image.sum(dim=0).double()
        sums[-2] += len(kept)
        scored.append(per_image)
        names += [(i, s[0]) for i, s in zip(batch, samples) if s is not None]
        if first is None and rank == 0:
            first = (lr[0], sr[0], hr[0])
    bar.close()
    if world > 1:
        dist.all_reduce(sums)
    values = sums.tolist()                                   # the one host sync
    images = int(values[-2])
    means = {name: values[k] / max(images, 1) for k, name in enumerate(METRIC_NAMES)}
    rows = torch.cat(scored).tolist() if scored else []
    per_image = [{"index": i, "name": name, **dict(zip(METRIC_NAMES, figures))}
                 for (i, name), figures in zip(names, rows)]
    if world > 1:
        shards = [None] * world
        dist.all_gather_object(shards, per_image)
        per_image = sorted((row for shard in shards for row in shard), key=lambda r: r["index"])
    model.train(was_training)
    return Validation(**means, images=images, dropped=int(values[-1]), per_image=per_image,
                      first=None if first is None else tuple(t.cpu() for t in first), model=model)
