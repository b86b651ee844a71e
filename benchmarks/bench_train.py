"""Training throughput: train.py's data + step vs the naive loop, same model and batch.

Data: the real GNR638 frames (480x270 -> 1920x1080), copied N times. Naive (the
GNR638 write-up): PIL decodes the PNG pair every sample, fp32, NCHW. train.py's
paths: images decoded once into the uint8 cache, then either keyed crops in
DataLoader workers or (train.py's default on CUDA when they fit) the images
held on the device with the crops gathered there; AMP + channels-last on CUDA.
Also times each data pipeline alone against the model alone (data must feed
at least 3x what the model consumes) and reports model FLOPs
utilisation (SRResNet-16: 2.218 M multiply-adds per LR pixel forward, x3 to train).
And the streaming path (train.py --loading stream, the set bigger than RAM and disk):
pairs decoded and checked in the workers, 16 a window, 64 patches from each decode,
against the decoded cache on the same data, both with the model and alone over one
whole epoch (every decode paid).

    python benchmarks/bench_train.py --steps 6                      # CPU
    python benchmarks/bench_train.py --device cuda --steps 100 --peak-tflops 989
    python benchmarks/bench_train.py --workers 3 --steps 40    # Kaggle's 4 vCPUs: 3 workers a GPU
"""
import argparse
import itertools
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common import machine, sample_dir
from srx4.data.patches import EpochBatches, ImageCache, TrainPatches, collate_drop_none
from srx4.data.device_patches import DevicePatches
from srx4.data.stream import WINDOW, StreamEpoch, StreamWindows
from srx4.image.codec import to_float
from srx4.train.step import train_step
from srx4.image.codec import image_size, list_images
from srx4.core.precision import for_training
from srx4.models import SRResNet

MACS_PER_LR_PIXEL = 2.218e6


def naive_batch(pairs, batch, patch, scale=4):
    lrs, hrs = [], []
    for lr_path, hr_path in random.choices(pairs, k=batch):
        lr = np.asarray(Image.open(lr_path).convert("RGB"))
        hr = np.asarray(Image.open(hr_path).convert("RGB"))
        y, x = random.randrange(lr.shape[0] - patch), random.randrange(lr.shape[1] - patch)
        lrs.append(torch.from_numpy(lr[y:y + patch, x:x + patch].copy()).permute(2, 0, 1))
        hrs.append(torch.from_numpy(hr[scale * y:scale * (y + patch), scale * x:scale * (x + patch)].copy()).permute(2, 0, 1))
    return torch.stack(lrs).float() / 255, torch.stack(hrs).float() / 255


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", default="")
    parser.add_argument("--copies", type=int, default=16, help="copies of each sample frame")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=24)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--naive-steps", type=int, default=0, help="steps for the naive loop (default: --steps)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast path's model")
    parser.add_argument("--workers", type=int, default=-1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp-dtype", default="auto", choices=["auto", "bf16", "fp16"],
                        help="autocast dtype (CUDA auto: bf16 from compute capability 8.0, else fp16; a CPU: "
                             "fp32 unless bf16 or fp16 is given)")
    parser.add_argument("--profile", action="store_true", help="print the slowest CUDA kernels of the fast path")
    parser.add_argument("--peak-tflops", type=float, default=0, help="dense bf16 peak for utilisation (H100 SXM 989)")
    args = parser.parse_args()
    device = torch.device(args.device)
    workers = args.workers if args.workers >= 0 else (8 if device.type == "cuda" else 1)
    tmp = Path(tempfile.mkdtemp())
    src = sample_dir(args.samples)
    pairs = []
    for p in list_images(src / "lr"):
        for k in range(args.copies):
            for side in ("lr", "hr"):
                (tmp / side).mkdir(exist_ok=True)
                shutil.copy(src / side / p.name, tmp / side / f"{p.stem}_{k}.png")
            pairs.append((tmp / "lr" / f"{p.stem}_{k}.png", tmp / "hr" / f"{p.stem}_{k}.png"))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run(make_batches, model, amp_dtype, scaler, channels_last):
        fast = amp_dtype is not None  # the trainer's fused Adam on CUDA; the naive loop's default Adam
        optimizer = torch.optim.Adam(model.parameters(), 1e-4, fused=fast or None)
        steps = 0
        for i, (lr, hr) in enumerate(make_batches()):  # lazily: loading is part of the measured time
            if i == 2:  # two warm-up steps
                sync()
                start = time.perf_counter()
            lr, hr = lr.to(device, non_blocking=True), hr.to(device, non_blocking=True)
            if channels_last:
                lr = lr.contiguous(memory_format=torch.channels_last)
            train_step(model, optimizer, scaler, lr, hr, "l1", amp_dtype)
            steps = i - 1
        sync()
        return steps * args.batch_size / (time.perf_counter() - start)

    torch.manual_seed(0)
    naive_steps = args.naive_steps or args.steps
    naive_rate = run(lambda: (naive_batch(pairs, args.batch_size, args.patch_size) for _ in range(naive_steps + 2)),
                     SRResNet().to(device).train(), None, None, False)

    sizes = [image_size(lr) for lr, _ in pairs]
    lr_cache = ImageCache([str(p) for p, _ in pairs], sizes)
    hr_cache = ImageCache([str(p) for _, p in pairs], [(w * 4, h * 4) for w, h in sizes])
    patches = TrainPatches(lr_cache, hr_cache, 4, args.patch_size, seed=42, patches_per_image=64)

    on_device = DevicePatches(patches, device)
    sampler = EpochBatches(len(patches), args.batch_size, 42, 0)
    keys = sampler.batches[:args.steps + 2]

    def loader_batches():  # DataLoader workers, pinned uint8 to the device, converted there
        loader = torch.utils.data.DataLoader(patches, batch_sampler=keys, num_workers=workers,
                                             collate_fn=collate_drop_none, pin_memory=device.type == "cuda")
        return ((to_float(b[0], device), to_float(b[1], device)) for b, _ in loader)

    def device_batches():  # the images already on the device: one gather per side per batch
        return ((to_float(b[0], device), to_float(b[1], device)) for b, _ in map(on_device.batch, keys))

    stream = StreamWindows([p.name for p, _ in pairs], [p for p, _ in pairs], [h for _, h in pairs], 4,
                           args.patch_size, 42, 64, False, 18.0)
    stream_epoch = StreamEpoch(len(pairs), 64, args.batch_size, 42)

    def stream_batches(limit=args.steps + 2):   # decoded in the workers, no cache
        stream_epoch.set_epoch(0, 0)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, sampler=stream_epoch, num_workers=workers,
                                             pin_memory=device.type == "cuda", prefetch_factor=2 if workers else None)
        batches = stream_epoch.batches(loader)
        return ((to_float(b[0], device), to_float(b[1], device)) for b, _ in itertools.islice(batches, limit))

    def cached_epoch():                           # the cached DataLoader over the same whole epoch
        loader = torch.utils.data.DataLoader(patches, batch_sampler=EpochBatches(len(patches), args.batch_size, 42, 0),
                                             num_workers=workers, collate_fn=collate_drop_none,
                                             pin_memory=device.type == "cuda")
        return ((to_float(b[0], device), to_float(b[1], device)) for b, _ in loader)

    def data_rate(batches):
        sync()
        start = time.perf_counter()
        count = sum(lr.shape[0] for lr, _ in batches())
        sync()
        return count / (time.perf_counter() - start)

    loader_data, device_data = data_rate(loader_batches), data_rate(device_batches)
    epoch_cached, epoch_stream = data_rate(cached_epoch), data_rate(lambda: stream_batches(len(stream_epoch)))
    cuda = device.type == "cuda"
    amp_dtype = for_training(device, True, args.amp_dtype, False).train_dtype    # a CPU: fp32 unless bf16/fp16 asked
    model = SRResNet().to(device).train()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    if args.compile:
        model = torch.compile(model)
    one_batch = next(device_batches())
    model_rate = run(lambda: itertools.repeat(one_batch, args.steps + 2), model, amp_dtype, scaler, cuda)
    loader_rate = run(loader_batches, model, amp_dtype, scaler, cuda)
    device_rate = run(device_batches, model, amp_dtype, scaler, cuda)
    stream_rate = run(stream_batches, model, amp_dtype, scaler, cuda)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
            run(device_batches, model, amp_dtype, scaler, cuda)
        print(prof.key_averages().table(sort_by="cuda_time_total" if cuda else "cpu_time_total", row_limit=30))

    print(f"machine: {machine()}; device {device}; SRResNet-16, batch {args.batch_size}, LR patch {args.patch_size}"
          f"{', torch.compile' if args.compile else ''}; {'bf16/fp16 autocast, channels-last' if cuda else str(amp_dtype or 'fp32')}")
    print(f"naive (PIL decode per sample, fp32, NCHW):       {naive_rate:9.1f} samples/s")
    print(f"decoded cache + DataLoader ({workers} workers):         {loader_rate:9.1f} samples/s = "
          f"{loader_rate / naive_rate:.2f}x naive")
    print(f"images on the device, crops there (--device-data): {device_rate:9.1f} samples/s = "
          f"{device_rate / naive_rate:.2f}x naive")
    print(f"model alone (one batch reused):                  {model_rate:9.1f} samples/s")
    print(f"data alone: DataLoader {loader_data:9.1f} samples/s = {loader_data / model_rate:.1f}x the model's rate; "
          f"device gather {device_data:9.1f} samples/s = {device_data / model_rate:.1f}x")
    print(f"streamed ({workers} workers, {WINDOW} pairs a window, 64 patches a decode, no cache): {stream_rate:9.1f} "
          f"samples/s = {100 * stream_rate / loader_rate:.0f}% of the cached DataLoader's")
    print(f"one whole epoch, data alone ({len(pairs)} pairs x 64 patches, every decode and pair check paid): "
          f"cached {epoch_cached:9.1f} samples/s, streamed {epoch_stream:9.1f} samples/s = "
          f"{100 * epoch_stream / epoch_cached:.0f}%; the model consumes {model_rate:.1f}")
    flops = device_rate * args.patch_size ** 2 * MACS_PER_LR_PIXEL * 2 * 3
    print(f"model FLOPs (device-data path): {flops / 1e12:.2f} TFLOP/s"
          + (f" = {100 * flops / (args.peak_tflops * 1e12):.1f}% of {args.peak_tflops} TFLOP/s peak" if args.peak_tflops else ""))
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
