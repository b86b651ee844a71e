"""ATen ops dispatched by one training step and one weight-average update, per trainable
model at its defaults, counted on a CPU with the choices the CUDA path makes (fused Adam,
channels-last, autocast in bf16, as an H100 runs; fp16 + GradScaler, as a T4 does),
beside the same step built the old way in the same run (Adam's per-parameter loop, one
copy_ per weight-average buffer): a GPU launches about one kernel per op, so the count is
what a small step pays in launches.

Counted with TorchDispatchMode: a foreach or fused op counts once, as it launches once
(or a few times) on a GPU.

    python benchmarks/bench_step_ops.py
"""
import argparse
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from common import machine
from srx4.models import ARCHS, build_model, model_config_from_flags
from srx4.train.config import TrainConfig
from srx4.train.ema import WeightAverage
from srx4.train.step import train_step

TRAINABLE = ("srresnet", "edsr", "span", "srcnn")


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def old_ema_update(average: WeightAverage, model):
    """The weight average as it was: a foreach lerp and one copy_ per buffer."""
    with torch.no_grad():
        torch._foreach_lerp_(list(average.model.parameters()), [p.detach() for p in model.parameters()], 0.001)
        for mine, theirs in zip(average.model.buffers(), model.buffers()):
            mine.copy_(theirs)


def count_step(name: str, fused: bool, dtype, batch: int = 16, patch: int = 24):
    """(ops of one step, the top five ops) for `name` at its defaults."""
    torch.manual_seed(0)
    model = build_model(model_config_from_flags({**TrainConfig().__dict__, "model": name})).train()
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=fused or None, foreach=False if not fused else None)
    scaler = torch.amp.GradScaler("cpu") if dtype == torch.float16 else None
    lr = torch.rand(batch, 3, patch, patch).contiguous(memory_format=torch.channels_last)
    hr = torch.rand(batch, 3, 4 * patch, 4 * patch)
    train_step(model, optimizer, scaler, lr, hr, "l1", dtype, share=(0.0, 1.0))          # warm: Adam's state
    with CountOps() as counted:
        train_step(model, optimizer, scaler, lr, hr, "l1", dtype, share=(0.0, 1.0))
    return sum(counted.ops.values()), counted.ops.most_common(5)


def count_ema(name: str, old: bool) -> int:
    model = build_model(model_config_from_flags({**TrainConfig().__dict__, "model": name}))
    average = WeightAverage(model, 0.999)
    with CountOps() as counted:
        old_ema_update(average, model) if old else average.update(model)
    return sum(counted.ops.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(TRAINABLE), choices=[n for n in ARCHS if n in TRAINABLE])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=24, help="LR patch side (the counts do not depend on it)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"machine: {machine()}; one step of batch {args.batch_size}, LR patch {args.patch_size}, counted on the CPU")
    print("| model | step, old way (Adam loop) | step, GPU path (fused Adam), bf16 | same, fp16 + GradScaler | "
          "weight average, old | weight average, now |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        size = (args.batch_size, args.patch_size)
        old, _ = count_step(name, False, torch.bfloat16, *size)
        new, top = count_step(name, True, torch.bfloat16, *size)
        fp16, _ = count_step(name, True, torch.float16, *size)
        print(f"| {name} | {old} | {new} | {fp16} | {count_ema(name, True)} | {count_ema(name, False)} |")
        print(f"|  | most frequent now: {', '.join(f'{op} {n}' for op, n in top)} | | | | |")


if __name__ == "__main__":
    main()
