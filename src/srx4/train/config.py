"""TrainConfig: every setting of a training run, one typed field per train.py flag.

The trainer, the run's data and its views read it as attributes; config.json and
last.ckpt keep it as a plain dict (`asdict`), and `from_saved` reads such a dict back,
whatever version wrote it (fields it does not know are left out, missing ones take
today's defaults).
"""
from dataclasses import dataclass, fields

from srx4.core.cli import CHANNELS_LAST_HELP, option
from srx4.core.system import AMP_DTYPES
from srx4.models import TRAINABLE
from srx4.runs.tracking import TRACKERS
from srx4.train.losses import LOSSES

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
    loss: str = option("l1", "training loss: l1, mse, charbonnier (a smooth L1), l1+ssim (L1 + --ssim-weight "
                             "x (1 - SSIM), for PSNR + 40 SSIM leaderboards), or l1+vgg (perceptual: sharper "
                             "textures, lower PSNR)", choices=LOSSES)
    ssim_weight: float = option(0.1, "weight of 1 - SSIM in --loss l1+ssim")
    vgg_weight: float = option(0.1, "weight of the VGG19 feature distance in --loss l1+vgg (ESRGAN weighs it 100x "
                               "its pixel L1; lower keeps more PSNR)")
    vgg_weights: str = option("", "VGG19 ImageNet weights for --loss l1+vgg: torchvision's vgg19-dcbb9e9d.pth "
                              "(default: torchvision's cache, if it holds it; nothing is downloaded)")
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
    metric: str = option("auto", "the leaderboard figure the summary names: psnr+40ssim (GNR638) or psnr (SRGB); "
                                 "auto = the competition's, when it is a known one", choices=["auto", "psnr+40ssim", "psnr"])
    select: str = option("psnr", "what picks the best weights (and --patience watches): psnr, or score = "
                                 "PSNR + 40 SSIM (the GNR638 leaderboard's figure)", choices=["psnr", "score"])
    patience: int = option(0, "stop after N epochs without a better validation figure (--select) (0 = never)")
    time_limit: float = option(0.0, "stop cleanly after this many hours, with the learning rate annealed to that "
                                    "point and a last validation (0 = none)")
    max_bad_steps: int = option(20, "stop when this many steps in a row have a non-finite loss")
    min_pair_psnr: float = option(18.0, "leave out pairs whose bicubic-upscaled LR scores under this RGB PSNR (dB) "
                                  "against their HR: swapped or mismatched files (0 = keep every pair)")
    loading: str = option("auto", "where the decoded images live: auto (a cache in RAM, else on disk, else streamed "
                          "when the set fits neither budget), cache, or stream", choices=["auto", "cache", "stream"])
    disk_budget_gb: float = option(-1.0, "on-disk image cache up to this size, else streamed (-1 = the free disk "
                                   "of --cache-dir less 1 GiB)")
    ram_budget_gb: float = option(-1.0, "decoded-image cache in RAM up to this size, else on disk (-1 = half the free RAM)")
    cache_dir: str = option("", "folder for the on-disk image cache, shared by the ranks and removed at exit "
                                "(default: the system temp folder; never Kaggle's /kaggle/working)")
    deterministic: bool = option(False, "deterministic algorithms (bit-identical reruns, slower on GPU)")
    quiet: bool = option(False, "no progress bars or progress lines")
    demo: bool = option(True, "train on the bundled demo when no competition data is found (--no-demo: stop with "
                              "an error instead, as the Kaggle kernels do)")


def from_saved(saved: dict, overrides: dict = None) -> TrainConfig:
    """A TrainConfig from a saved dict (config.json, last.ckpt's train_config), with
    `overrides` (the flags given on this command line) on top."""
    known = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in saved.items() if k in known}
    values.update(overrides or {})
    return TrainConfig(**values)
