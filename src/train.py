"""Train SRResNet (default), EDSR-baseline, a SPAN-style model or SRCNN on paired LR/HR
folders, from scratch or fine-tuning given weights (ours, shipped, or a foreign .pth).

In:  --data DIR holding lr/NAME and hr/NAME (default: data/train, the competition
     folders under /kaggle/input on Kaggle, else the bundled demo built from
     scikit-image's photos).
Out: logs/<run>/ best.safetensors + model.json (best validation RGB PSNR, or score with --select),
     last.ckpt (resumable), config.json, split.json, hygiene.json, train.log,
     metrics.csv, curves.png, samples/epoch_NNN.png.

    python src/train.py                                   # the demo, on CPU, a few minutes
    python src/train.py --data data/train --epochs 100 --run srresnet_a
    python src/train.py --resume logs/srresnet_a/last.ckpt
    python src/train.py --init-weights srresnet-x4 --epochs 20        # fine-tune shipped weights
    python src/train.py --init-weights 4x_SwinIR_light.pth --grad-accum 4 --activation-checkpointing
    torchrun --nproc_per_node=2 src/train.py --data ... --run-name a   # two GPUs (DDP)
"""
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields

import torch

from srx4.core import distributed, gpu_memory, paths
from srx4.models import ARCHS, TRAINABLE
from srx4.models.weights import WeightsError, load_model
from srx4.runs.checkpoint import load_checkpoint
from srx4.core.cli import CHANNELS_LAST_HELP, given_fields, option, parse_config
from srx4.data.cache import CacheError
from srx4.train.losses import LOSSES
from srx4.core.system import AMP_DTYPES, resolve_device
from srx4.runs.tracking import TRACKERS, TrackerError, check_tracker
from srx4.core.errors import RunStopped
from srx4.train.trainer import Trainer, run_dir_for


BN_REFRESH = 8   # training batches over which BatchNorm statistics are recomputed before validating


@dataclass
class TrainConfig:
    data: str = option("", "folder with lr/ and hr/ (default: data/train, Kaggle input, else the demo)")
    model: str = option("srresnet", "architecture: srresnet (SRResNet-16 with BatchNorm), edsr (EDSR-baseline), "
                                    "span (SPAN-style, efficient), srcnn (the baseline)", choices=TRAINABLE)
    scale: int = option(4, "upscaling factor (2, 3 or 4)")
    num_blocks: int = option(0, "residual blocks (0 = the model's own: SRResNet and EDSR 16, SPAN 6)")
    channels: int = option(0, "feature channels (0 = the model's own: SRResNet and EDSR 64, SPAN 48)")
    bicubic_residual: bool = option(True, "learn SR minus the bicubic upsampled input, starting at bicubic "
                                          "(SRResNet, EDSR, SPAN)")
    srcnn_kernels: str = option("9-5-5", "SRCNN kernel sizes", choices=["9-5-5", "9-1-5"])
    y_only: bool = option(False, "SRCNN on the Y channel only (chroma stays bicubic)")
    epochs: int = option(100, "epochs to train (total, a resumed run continues to this)")
    batch_size: int = option(16, "patches per step (per GPU under torchrun)")
    patch_size: int = option(24, "LR patch side; the HR patch is scale x this")
    patches_per_image: int = option(48, "random patches cut from each training image per epoch (an epoch long "
                                        "enough that validating 100 frames costs ~13%% of it)")
    colour_augment: bool = option(True, "random channel order and inversion (255 - x) of each training patch "
                                        "pair, so no palette or brightness becomes a bias (off for data whose "
                                        "degradation treats channels or dark and bright differently)")
    learning_rate: float = option(1e-4, "Adam learning rate")
    loss: str = option("l1", "training loss: l1, mse, charbonnier (a smooth L1), or l1+ssim (L1 + --ssim-weight "
                             "x (1 - SSIM), for PSNR + 40 SSIM leaderboards)", choices=LOSSES)
    ssim_weight: float = option(0.1, "weight of 1 - SSIM in --loss l1+ssim")
    ema: float = option(0.999, "validate, select and save an exponential moving average of the weights with this "
                               "decay (warmed up so short runs are not held near the start; 0 = off)")
    schedule: str = option("cosine", "learning-rate schedule over all steps", choices=["cosine", "constant"])
    warmup_steps: int = option(-1, "linear warm-up steps (-1 = 5%% of the run, at most 500)")
    seed: int = option(42, "seed for the split, the crops and the weights")
    val_fraction: float = option(0.15, "validation share of the pairs (0 = train on everything)")
    frame_block: int = option(0, "numbered frames (00029.png ...) go to one side of the split in blocks of this "
                                 "many consecutive frames, so near-duplicates never straddle it (0 = 1%% of them)")
    final_limit: int = option(0, "validation images the best weights are scored on at the end (0 = all)")
    val_limit: int = option(100, "score this fixed seeded subset of the validation images each epoch, to pick the "
                                 "best weights (0 = all); the whole set is scored once at the end")
    bn_refresh: int = option(BN_REFRESH, "before each validation, recompute the BatchNorm statistics over this "
                                         "many training batches with the current weights (0 = keep the running ones)")
    run: str = option("", "run name: outputs go to logs/<run>/ (default: model and time); under torchrun "
                          "write --run-name (torchrun mistakes --run for its --run-path)", aliases=["--run-name"])
    resume: str = option("", "continue from logs/<run>/last.ckpt")
    init_weights: str = option("", "fine-tune from these weights: a run folder, .safetensors, shipped name "
                                   "(weights/: srresnet-x4, ...) or a foreign model file spandrel knows (SwinIR, "
                                   "HAT, DAT, SPAN, ... .pth); the model is the one the weights were trained as")
    grad_accum: int = option(1, "split each batch into this many micro-batches (gradients accumulated: the same "
                                "step in less memory, for big models on a 16 GB T4)")
    activation_checkpointing: bool = option(False, "recompute each block's activations in the backward pass "
                                                   "instead of keeping them (less memory, ~30%% slower)")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    amp: bool = option(True, "mixed precision on CUDA (on a CPU only with --amp-dtype bf16 or fp16)")
    amp_dtype: str = option("auto", "autocast dtype: auto (CUDA: bf16 from compute capability 8.0, else fp16 with a "
                                    "GradScaler, a T4 is 7.5; CPU: fp32), bf16 or fp16 (on a CPU too: --device cpu "
                                    "--amp-dtype fp16 runs a T4's fp16 step code, GradScaler included)",
                            choices=AMP_DTYPES)
    gpu_memory_gb: float = option(0.0, "use at most this many GiB of GPU memory (0 = all), tiles, validation "
                                       "batches and device-held images included; 14 rehearses a 16 GB T4 (14.7 GiB, "
                                       "less the CUDA context) on a larger GPU")
    grad_scale_init: float = option(2.0**16, "fp16 only: the GradScaler's first loss scale (it halves at every "
                                             "step whose gradients overflow, which is then skipped and counted)")
    channels_last: bool = option(True, CHANNELS_LAST_HELP)
    compile: bool = option(False, "torch.compile the model (CUDA; slower start, faster steps)")
    compile_mode: str = option("default", "torch.compile mode with --compile: reduce-overhead uses CUDA graphs, "
                                          "max-autotune also searches kernels (minutes at start)",
                               choices=["default", "reduce-overhead", "max-autotune"])
    device_data: str = option("auto", "hold the training images on the GPU as uint8 and crop there: auto (when "
                                      "they fit in half the free GPU memory), on, off (DataLoader workers)",
                              choices=["auto", "on", "off"])
    workers: int = option(-1, "DataLoader worker processes per GPU process (-1 = the cores shared between "
                              "the processes, one left to each; 0 on a CPU)")
    threads: int = option(0, "CPU threads for torch (0 = torch's default)")
    checkpoint_every: int = option(500, "also write last.ckpt every N steps (0 = only at epoch ends)")
    sample_every: int = option(5, "write an LR | bicubic | SR | HR picture every N epochs")
    tracker: str = option("", "also log to tensorboard (logs/<run>/tensorboard) or mlflow (logs/mlflow.db); "
                              "needs requirements-extras.txt", choices=TRACKERS)
    select: str = option("psnr", "what picks the best weights (and --patience watches): psnr, or score = "
                                 "PSNR + 40 SSIM (the GNR638 leaderboard's figure)", choices=["psnr", "score"])
    patience: int = option(0, "stop after N epochs without a better validation figure (--select) (0 = never)")
    time_limit: float = option(0.0, "stop cleanly after this many hours, with the learning rate annealed to that "
                                    "point and a last validation (0 = none)")
    max_bad_steps: int = option(20, "stop when this many steps in a row have a non-finite loss")
    ram_budget_gb: float = option(-1.0, "decoded-image cache in RAM up to this size, else on disk (-1 = half the free RAM)")
    cache_dir: str = option("", "folder for the on-disk image cache, shared by the ranks and removed at exit "
                                "(default: the system temp folder; never Kaggle's /kaggle/working)")
    deterministic: bool = option(False, "deterministic algorithms (bit-identical reruns, slower on GPU)")
    quiet: bool = option(False, "no progress bars or progress lines")
    demo: bool = option(True, "train on the bundled demo when no competition data is found (--no-demo: stop with "
                              "an error instead, as the Kaggle kernels do)")


# The demo trains a small bicubic-residual model (each model's own demo_preset: SRResNet 4 x 32)
# that beats bicubic within minutes on 2 CPU cores.
DEMO_PRESET = dict(epochs=8, patches_per_image=32, learning_rate=5e-4, warmup_steps=50, checkpoint_every=0,
                   sample_every=4)
MODEL_FLAGS = {"model", "num_blocks", "channels", "bicubic_residual", "srcnn_kernels", "y_only"}


def apply_demo(config: TrainConfig, argv) -> TrainConfig:
    """Use the demo data and preset for every flag the user did not give."""
    from srx4.data.demo import build_demo
    given = given_fields(TrainConfig, argv)
    demo = build_demo(paths.demo_dir(), config.scale)
    print(f"no competition data found (data/train/{{lr,hr}}): training on the bundled demo in {demo} "
          f"(scikit-image photos); put your data in data/train to train on it", flush=True)
    config.data = str(demo / "train")
    shape = {} if config.init_weights else ARCHS[config.model].demo_preset   # fine-tuning keeps the weights' model
    preset = {k: v for k, v in {**shape, **DEMO_PRESET}.items() if k not in given}
    for key, value in preset.items():
        setattr(config, key, value)
    print("demo preset, for the flags you did not give (a small model that trains in minutes on a CPU): "
          + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in preset.items()), flush=True)
    if not config.run:
        config.run = "demo"
    return config


def adopt_init_weights(config: TrainConfig, argv) -> TrainConfig:
    """--init-weights: the model is the one the weights were trained as. A model flag given
    on the command line that asks for another model is an error (WeightsError), not a
    silent mismatch; --model and --scale follow the weights."""
    _, model_config = load_model(config.init_weights)
    given = given_fields(TrainConfig, argv) & MODEL_FLAGS
    name = model_config["name"]
    wanted = {"model": config.model} if "model" in given else {}
    if name in ARCHS and name != "spandrel":
        wanted.update(ARCHS[name].options_from_flags({k: getattr(config, k) for k in given}))
    have = {"model": name, **model_config}
    if name == "srcnn" and "srcnn_kernels" in given:
        wanted["kernel_sizes"] = [int(k) for k in config.srcnn_kernels.split("-")]
    clash = {k: v for k, v in wanted.items() if have.get(k, v) != v or (k != "model" and k not in have)}
    if name == "spandrel":       # a foreign model's shape is its file's: any model flag asks for another
        clash = {k: getattr(config, k) for k in sorted(given)}
    if clash:
        raise WeightsError(f"{config.init_weights}: the weights are {describe(model_config)}; "
                           + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in clash.items())
                           + " asks for another model (drop the flag, or train from scratch)")
    if "scale" in given_fields(TrainConfig, argv) and config.scale != model_config["scale"]:
        raise WeightsError(f"{config.init_weights}: the weights are x{model_config['scale']}, not --scale {config.scale}")
    config.model, config.scale = name, int(model_config["scale"])
    return config


def describe(model_config: dict) -> str:
    from srx4.runs.inspect import describe_model
    return describe_model(model_config)


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
    else:
        if config.init_weights:
            try:
                config = adopt_init_weights(config, argv)
            except WeightsError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
        if not config.data:
            found = paths.default_train_dir()
            if found is None and not config.demo:
                print(f"error: no competition data found (data/train/{{lr,hr}}, or lr/ and hr/ under "
                      f"{paths.kaggle_root() / 'input'}) and --no-demo: attach the competition's data",
                      file=sys.stderr)
                return 2
            config = apply_demo(config, argv) if found is None else config
            config.data = config.data or str(found)
    if config.grad_accum < 1 or config.grad_accum > config.batch_size:
        print(f"error: --grad-accum {config.grad_accum}: between 1 and --batch-size ({config.batch_size})",
              file=sys.stderr)
        return 2
    try:
        check_tracker(config.tracker)
    except TrackerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.gpu_memory_gb and torch.cuda.is_available():
        print(gpu_memory.limit(config.gpu_memory_gb, int(os.environ.get("LOCAL_RANK", "0"))), flush=True)
    device_type = "cuda" if (config.device.startswith("cuda") or
                             (config.device == "auto" and torch.cuda.is_available())) else "cpu"
    rank, world, local_rank = distributed.setup(device_type)
    device = resolve_device(config.device, local_rank)
    if not config.resume:
        # decided once, by rank 0: each rank formatting its own time could name another folder
        name, problem = "", ""
        if rank == 0:
            try:
                name = free_run_name(config.run or f"{config.model}_{time.strftime('%Y%m%d_%H%M%S')}",
                                     explicit="run" in given_fields(TrainConfig, argv))
            except FileExistsError as err:
                problem = str(err)
        config.run, problem = distributed.from_rank0((name, problem), world)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            distributed.cleanup(world, finished=False)
            return 2
    run_dir = run_dir_for(asdict(config))
    existed, finished = run_dir.exists(), False
    try:
        trainer = Trainer(asdict(config), device, rank, world, checkpoint)
        trainer.fit()
        finished = True
    except (FileNotFoundError, ValueError, RunStopped, CacheError) as err:
        print(f"error: {err}", file=sys.stderr)
        if rank == 0 and not existed and not (run_dir / "last.ckpt").exists():
            shutil.rmtree(run_dir, ignore_errors=True)   # a run that never trained leaves no folder
        return 2
    finally:
        distributed.cleanup(world, finished)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    # torchrun stops its workers with SIGTERM: exit through the finally blocks (cache removed)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # everything is written, closed and the process group destroyed: leave without the
        # interpreter's teardown, where the communication library's C++ threads could still be
        # joined during static destruction ("terminate called without an active exception")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
