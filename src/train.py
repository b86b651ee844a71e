"""Train SRResNet or SRCNN on paired LR/HR folders.

In:  --data DIR holding lr/NAME and hr/NAME (default: data/train, the competition
     folders under /kaggle/input on Kaggle, else the bundled demo built from
     scikit-image's photos).
Out: logs/<run>/ best.safetensors + model.json (best validation RGB PSNR),
     last.ckpt (resumable), config.json, split.json, hygiene.json, train.log,
     metrics.csv, curves.png, samples/epoch_NNN.png.

    python src/train.py                                   # the demo, on CPU, a few minutes
    python src/train.py --data data/train --epochs 100 --run srresnet_a
    python src/train.py --resume logs/srresnet_a/last.ckpt
    torchrun --nproc_per_node=2 src/train.py --data ... --run-name a   # two GPUs (DDP)
"""
import os
import sys
import time
from dataclasses import asdict, dataclass, fields

import torch

from srx4 import distributed, paths
from srx4.checkpoint import WeightsError, load_checkpoint
from srx4.config import given_fields, option, parse_config
from srx4.infer import resolve_device
from srx4.trainer import RunStopped, Trainer


@dataclass
class TrainConfig:
    data: str = option("", "folder with lr/ and hr/ (default: data/train, Kaggle input, else the demo)")
    model: str = option("srresnet", "architecture", choices=["srresnet", "srcnn"])
    scale: int = option(4, "upscaling factor (2, 3 or 4)")
    num_blocks: int = option(16, "SRResNet residual blocks")
    channels: int = option(64, "SRResNet feature channels")
    bicubic_residual: bool = option(False, "SRResNet learns SR minus the bicubic upsampled input")
    srcnn_kernels: str = option("9-5-5", "SRCNN kernel sizes", choices=["9-5-5", "9-1-5"])
    y_only: bool = option(False, "SRCNN on the Y channel only (chroma stays bicubic)")
    epochs: int = option(100, "epochs to train (total, a resumed run continues to this)")
    batch_size: int = option(16, "patches per step (per GPU under torchrun)")
    patch_size: int = option(24, "LR patch side; the HR patch is scale x this")
    patches_per_image: int = option(1, "random patches cut from each training image per epoch")
    learning_rate: float = option(1e-4, "Adam learning rate")
    loss: str = option("l1", "training loss", choices=["l1", "mse"])
    schedule: str = option("cosine", "learning-rate schedule over all steps", choices=["cosine", "constant"])
    warmup_steps: int = option(0, "linear warm-up steps")
    seed: int = option(42, "seed for the split, the crops and the weights")
    val_fraction: float = option(0.15, "validation share of the pairs (0 = train on everything)")
    val_limit: int = option(0, "validate on at most this many images (0 = all)")
    run: str = option("", "run name: outputs go to logs/<run>/ (default: model and time); under torchrun "
                          "write --run-name (torchrun mistakes --run for its --run-path)", aliases=["--run-name"])
    resume: str = option("", "continue from logs/<run>/last.ckpt")
    init_weights: str = option("", "start from these weights (.safetensors or run folder) and fine-tune")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    amp: bool = option(True, "mixed precision on CUDA (bf16 where supported, else fp16 with a scaler)")
    channels_last: bool = option(True, "channels-last memory format on CUDA")
    compile: bool = option(False, "torch.compile the model (CUDA; slower start, faster steps)")
    device_data: str = option("auto", "hold the training images on the GPU as uint8 and crop there: auto (when "
                                      "they fit in half the free GPU memory), on, off (DataLoader workers)",
                              choices=["auto", "on", "off"])
    workers: int = option(-1, "DataLoader worker processes (-1 = automatic)")
    threads: int = option(0, "CPU threads for torch (0 = torch's default)")
    checkpoint_every: int = option(500, "also write last.ckpt every N steps (0 = only at epoch ends)")
    sample_every: int = option(5, "write an LR | bicubic | SR | HR picture every N epochs")
    patience: int = option(0, "stop after N epochs without a better validation PSNR (0 = never)")
    time_limit: float = option(0.0, "stop cleanly (saving last.ckpt) after this many hours (0 = none)")
    max_bad_steps: int = option(20, "stop when this many steps in a row have a non-finite loss")
    ram_budget_gb: float = option(-1.0, "decoded-image cache in RAM up to this size, else on disk (-1 = half the free RAM)")
    cache_dir: str = option("", "folder for the on-disk image cache (default: the system temp folder)")
    deterministic: bool = option(False, "deterministic algorithms (bit-identical reruns, slower on GPU)")


# The demo trains a small bicubic-residual SRResNet that beats bicubic within minutes on 2 CPU cores.
DEMO_PRESET = dict(num_blocks=4, channels=32, bicubic_residual=True, epochs=8, batch_size=16, patch_size=24,
                   patches_per_image=32, learning_rate=5e-4, warmup_steps=50, checkpoint_every=0, sample_every=4)


def apply_demo(config: TrainConfig, argv) -> TrainConfig:
    """Use the demo data and preset for every flag the user did not give."""
    from srx4.demo import build_demo
    given = given_fields(TrainConfig, argv)
    demo = build_demo(paths.demo_dir(), config.scale)
    print(f"no competition data found (data/train/{{lr,hr}}): training on the bundled demo in {demo} "
          f"(scikit-image photos); put your data in data/train to train on it", flush=True)
    config.data = str(demo / "train")
    for key, value in DEMO_PRESET.items():
        if key not in given:
            setattr(config, key, value)
    if not config.run:
        config.run = "demo"
    return config


def free_run_name(name: str, explicit: bool) -> str:
    """Never train over an earlier run: an explicit --run that exists is an error,
    an automatic name (the demo) gets the next free suffix: demo, demo_2, ..."""
    taken = lambda n: (paths.logs_dir() / n / "last.ckpt").exists()  # noqa: E731
    if not taken(name):
        return name
    if explicit:
        raise FileExistsError(f"{paths.logs_dir() / name} already holds a run: continue it with --resume "
                              f"{paths.logs_dir() / name / 'last.ckpt'}, or choose another --run")
    k = 2
    while taken(f"{name}_{k}"):
        k += 1
    return f"{name}_{k}"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    config = parse_config(TrainConfig, __doc__.split("\n")[0], argv)
    checkpoint = None
    if config.resume:  # the checkpoint's config wins, except for what this command line gives
        try:
            checkpoint = load_checkpoint(config.resume)
        except WeightsError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        saved = checkpoint["train_config"]
        given = given_fields(TrainConfig, argv)
        known = {f.name for f in fields(TrainConfig)}
        config = TrainConfig(**{k: (getattr(config, k) if k in given else v) for k, v in saved.items() if k in known})
    elif not config.data:
        found = paths.default_train_dir()
        config = apply_demo(config, argv) if found is None else config
        config.data = config.data or str(found)
    if config.threads:
        torch.set_num_threads(config.threads)
    device_type = "cuda" if (config.device.startswith("cuda") or
                             (config.device == "auto" and torch.cuda.is_available())) else "cpu"
    rank, world, local_rank = distributed.setup(device_type)
    device = resolve_device(config.device, local_rank)
    if not config.resume:
        try:
            config.run = free_run_name(config.run or f"{config.model}_{time.strftime('%Y%m%d_%H%M%S')}",
                                       explicit="run" in given_fields(TrainConfig, argv))
        except FileExistsError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    try:
        trainer = Trainer(asdict(config), device, rank, world, checkpoint)
        trainer.fit()
    except (FileNotFoundError, ValueError, RunStopped) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        distributed.cleanup(world)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
