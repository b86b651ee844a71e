"""CPU training step under autocast: fp16 (with GradScaler("cpu"), the T4's step code)
and bf16 against fp32, per model, in one run (train/step.py train_step, random batches).

In:  nothing. Out: ms per step and the ratio to fp32 (NCHW: today's CPU path) for each model,
dtype and memory layout, printed.

    python benchmarks/bench_cpu_amp.py                       # small models, batch 4, LR patch 16, 1 thread
    python benchmarks/bench_cpu_amp.py --blocks 0 --channels 0 --batch-size 16 --patch-size 24 --threads 2 \
        --dtypes bf16 --layouts nchw channels-last --models srresnet span     # full size (0 = the model's own)
"""
import argparse
import time

import torch

from common import machine
from srx4.models import build_model
from srx4.train.step import train_step


def ms_per_step(name, dtype, args, layout="nchw"):
    torch.manual_seed(0)
    size = {k: v for k, v in (("num_blocks", args.blocks), ("channels", args.channels)) if v > 0}
    model = build_model({"name": name, "scale": 4, **size}).train()
    cl = layout == "channels-last"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    scaler = torch.amp.GradScaler("cpu") if dtype == torch.float16 else None
    lr = torch.rand(args.batch_size, 3, args.patch_size, args.patch_size)
    if cl:
        lr = lr.contiguous(memory_format=torch.channels_last)
    hr = torch.rand(args.batch_size, 3, 4 * args.patch_size, 4 * args.patch_size)
    for _ in range(2):                                       # warm-up
        train_step(model, optimizer, scaler, lr, hr, "l1", dtype)
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step(model, optimizer, scaler, lr, hr, "l1", dtype)
    return 1000 * (time.perf_counter() - start) / args.steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["srresnet", "edsr", "span"])
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtypes", nargs="+", default=["fp16", "bf16"], choices=["fp16", "bf16"])
    parser.add_argument("--layouts", nargs="+", default=["nchw"], choices=["nchw", "channels-last"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    flags = open("/proc/cpuinfo").read()
    print(f"machine: {machine()}; avx512_bf16: {'avx512_bf16' in flags}, avx512_fp16: {'avx512_fp16' in flags}; "
          f"{args.blocks} blocks x {args.channels} channels, batch {args.batch_size}, LR patch {args.patch_size}, "
          f"{args.threads} thread(s)")
    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16}
    for name in args.models:
        base = ms_per_step(name, None, args)
        row = [f"{name:9s} fp32 {base:8.1f} ms"]
        for layout in args.layouts:
            for label in ["fp32"] * (layout != "nchw") + args.dtypes:
                t = ms_per_step(name, dtypes.get(label), args, layout)
                row.append(f"{label}{'' if layout == 'nchw' else ' ' + layout} {t:8.1f} ms ({base / t:.2f}x fp32)")
        print(" | ".join(row), flush=True)


if __name__ == "__main__":
    main()
