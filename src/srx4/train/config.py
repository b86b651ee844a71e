"""TrainConfig: every setting of a training run, one typed field per train.py flag, in
groups (model, data, optimisation, precision, run, kaggle): the headings of --help, of
docs/flags.md and of a recipe file (configs/*.toml). Each group's range checks stand
below its fields (`problems` gathers them); `without_effect` names the settings that the
chosen ones make idle.

The trainer, the run's data and its views read it as attributes; config.json and
last.ckpt keep it as a plain dict (`asdict`), and `from_saved` reads such a dict back,
whatever version wrote it (fields it does not know are left out, missing ones take
today's defaults).
"""
import re
from dataclasses import dataclass, fields

from srx4.core.cli import CHANNELS_LAST_HELP, option
from srx4.core.errors import FlagError
from srx4.core.precision import AMP_DTYPES
from srx4.image.scoring import OLD_METRIC_NAMES
from srx4.models import TRAINABLE
from srx4.runs.tracking import TRACKERS
from srx4.train.losses import LOSSES

BN_REFRESH = 8   # training batches over which BatchNorm statistics are recomputed before validating


GROUPS = ("model", "data", "optimisation", "precision", "run", "kaggle")


def _group(name):
    return lambda default, help_text, **more: option(default, help_text, group=name, **more)


MODEL, DATA, OPTIM, PRECISION, RUN, KAGGLE = (_group(name) for name in GROUPS)


@dataclass
class TrainConfig:
    # -- the model -------------------------------------------------------------------------------------------
    model: str = MODEL("srresnet", "architecture: srresnet (SRResNet-16 with BatchNorm), edsr (EDSR-baseline), "
                                   "span (SPAN-style, efficient), srcnn (the baseline)", choices=TRAINABLE)
    scale: int = MODEL(4, "upscaling factor (2, 3 or 4)")
    num_blocks: int = MODEL(0, "residual blocks (0 = the model's own: SRResNet and EDSR 16, SPAN 6)")
    channels: int = MODEL(0, "feature channels (0 = the model's own: SRResNet and EDSR 64, SPAN 48)")
    bicubic_residual: bool = MODEL(True, "learn SR minus the bicubic upsampled input, starting at bicubic "
                                         "(SRResNet, EDSR, SPAN)")
    srcnn_kernels: str = MODEL("9-5-5", "SRCNN kernel sizes", choices=["9-5-5", "9-1-5"])
    y_only: bool = MODEL(False, "SRCNN on the Y channel only (chroma stays bicubic)")
    init_weights: str = MODEL("", "fine-tune from these weights: a run folder, .safetensors, shipped name "
                                  "(weights/: srresnet-x4, ...) or a foreign model file spandrel knows (SwinIR, "
                                  "HAT, DAT, SPAN, ... .pth); the model is the one the weights were trained as")

    def _check_model(self):
        yield "scale", self.scale in (2, 3, 4), "2, 3 or 4"
        yield "num_blocks", self.num_blocks >= 0, "0 (the model's own) or more"
        yield "channels", self.channels >= 0, "0 (the model's own) or more"

    # -- the data --------------------------------------------------------------------------------------------
    data: str = DATA("", "folder with lr/ and hr/ (default: data/train, Kaggle input, else the demo; 'demo': the "
                           "bundled demo)")
    demo: bool = DATA(True, "train on the bundled demo when no competition data is found (--no-demo: stop with "
                            "an error instead, as the Kaggle kernels do)")
    val_fraction: float = DATA(0.15, "validation share of the pairs (0 = train on everything)")
    frame_block: int = DATA(0, "numbered frames (00029.png ...) go to one side of the split in blocks of this "
                               "many consecutive frames, so near-duplicates never straddle it (0 = 1%% of them)")
    val_limit: int = DATA(100, "score this fixed seeded subset of the validation images each epoch, to pick the "
                               "best weights (0 = all); the whole set is scored once at the end")
    final_limit: int = DATA(0, "validation images the best weights are scored on at the end (0 = all)")
    min_pair_psnr: float = DATA(18.0, "leave out pairs whose bicubic-upscaled LR scores under this RGB PSNR (dB) "
                                "against their HR: swapped or mismatched files (0 = keep every pair)")
    patch_size: int = DATA(24, "LR patch side; the HR patch is scale x this")
    patches_per_image: int = DATA(48, "random patches cut from each training image per epoch (an epoch long "
                                      "enough that validating 100 frames costs ~13%% of it)")
    colour_augment: bool = DATA(True, "random channel order and inversion (255 - x) of each training patch "
                                      "pair, so no palette or brightness becomes a bias (off for data whose "
                                      "degradation treats channels or dark and bright differently)")
    loading: str = DATA("auto", "where the decoded images live: auto (a cache in RAM, else on disk, else streamed "
                        "when the set fits neither budget), cache, or stream", choices=["auto", "cache", "stream"])
    ram_budget_gb: float = DATA(-1.0, "decoded-image cache in RAM up to this size, else on disk (-1 = half the free "
                                      "RAM)")
    disk_budget_gb: float = DATA(-1.0, "on-disk image cache up to this size, else streamed (-1 = the free disk "
                                 "of --cache-dir less 1 GiB)")
    cache_dir: str = DATA("", "folder for the on-disk image cache, shared by the ranks and removed at exit "
                              "(default: the system temp folder; never Kaggle's /kaggle/working)")
    device_data: str = DATA("auto", "hold the training images on the GPU as uint8 and crop there: auto (when "
                                    "they fit in half the free GPU memory), on, off (DataLoader workers)",
                            choices=["auto", "on", "off"])
    workers: int = DATA(-1, "DataLoader worker processes per GPU process (-1 = the cores shared between "
                            "the processes, one left to each; 0 on a CPU)")

    def _check_data(self):
        yield "val_fraction", 0 <= self.val_fraction < 1, "from 0 (no validation) up to, not including, 1"
        for name in ("frame_block", "val_limit", "final_limit", "min_pair_psnr"):
            yield name, getattr(self, name) >= 0, "0 or more"
        yield "patch_size", self.patch_size >= 4, "4 LR pixels or more"
        yield "patches_per_image", self.patches_per_image >= 1, "1 or more"
        yield "workers", self.workers >= -1, "-1 (automatic) or 0 or more"
        for name in ("ram_budget_gb", "disk_budget_gb"):
            yield name, getattr(self, name) == -1 or getattr(self, name) >= 0, "-1 (automatic) or 0 or more"

    # -- the optimisation ------------------------------------------------------------------------------------
    epochs: int = OPTIM(100, "epochs to train (total, a resumed run continues to this)")
    batch_size: int = OPTIM(16, "patches per step (per GPU under torchrun)")
    learning_rate: float = OPTIM(1e-4, "Adam learning rate")
    schedule: str = OPTIM("cosine", "learning-rate schedule over all steps", choices=["cosine", "constant"])
    warmup_steps: int = OPTIM(-1, "linear warm-up steps (-1 = 5%% of the run, at most 500)")
    loss: str = OPTIM("l1", "training loss: l1, mse, charbonnier (a smooth L1), l1+ssim (L1 + --ssim-weight "
                            "x (1 - SSIM), for PSNR + 40 SSIM leaderboards), or l1+vgg (perceptual: sharper "
                            "textures, lower PSNR)", choices=LOSSES)
    ssim_weight: float = OPTIM(0.1, "weight of 1 - SSIM in --loss l1+ssim")
    vgg_weight: float = OPTIM(0.1, "weight of the VGG19 feature distance in --loss l1+vgg (ESRGAN weighs it 100x "
                              "its pixel L1; lower keeps more PSNR)")
    vgg_weights: str = OPTIM("", "VGG19 ImageNet weights for --loss l1+vgg: torchvision's vgg19-dcbb9e9d.pth "
                             "(default: torchvision's cache, if it holds it; nothing is downloaded)")
    ema: float = OPTIM(0.999, "validate, select and save an exponential moving average of the weights with this "
                              "decay (warmed up so short runs are not held near the start; 0 = off)")
    grad_accum: int = OPTIM(1, "split each batch into this many micro-batches (gradients accumulated: the same "
                               "step in less memory, for big models on a 16 GB T4)")
    activation_checkpointing: bool = OPTIM(False, "recompute each block's activations in the backward pass "
                                                  "instead of keeping them (less memory, ~30%% slower)")
    bn_refresh: int = OPTIM(BN_REFRESH, "before each validation, recompute the BatchNorm statistics over this "
                                        "many training batches with the current weights (0 = keep the running ones)")
    seed: int = OPTIM(42, "seed for the split, the crops and the weights")
    select: str = OPTIM("psnr", "what picks the best weights (and --patience watches): psnr, or score = "
                                "PSNR + 40 SSIM (the GNR638 leaderboard's figure)", choices=["psnr", "score"])
    patience: int = OPTIM(0, "stop after N epochs without a better validation figure (--select) (0 = never)")
    time_limit: float = OPTIM(0.0, "stop cleanly after this many hours, with the learning rate annealed to that "
                                   "point and a last validation (0 = none)")
    max_bad_steps: int = OPTIM(20, "stop when this many steps in a row have a non-finite loss")

    def _check_optimisation(self):
        yield "epochs", self.epochs >= 1, "1 or more"
        yield "batch_size", self.batch_size >= 1, "1 or more"
        yield "learning_rate", 0 < self.learning_rate <= 1e36, "more than 0 (and at most 1e36: Adam's first steps in fp32)"
        yield "warmup_steps", self.warmup_steps >= -1, "-1 (5% of the run) or 0 or more"
        yield "ema", 0 <= self.ema < 1, "0 (off) or a decay below 1, such as 0.999"
        yield "grad_accum", 1 <= self.grad_accum <= self.batch_size, f"between 1 and --batch-size ({self.batch_size})"
        for name in ("ssim_weight", "vgg_weight", "bn_refresh", "patience", "time_limit"):
            yield name, getattr(self, name) >= 0, "0 or more"
        yield "max_bad_steps", self.max_bad_steps >= 1, "1 or more"

    # -- precision and speed ---------------------------------------------------------------------------------
    device: str = PRECISION("auto", "auto, cpu, cuda or cuda:N")
    amp: bool = PRECISION(True, "mixed precision: on CUDA the GPU's dtype; on a CPU bf16 where it is native and the "
                                "model measured faster so (the log's precision line says which); --no-amp: fp32")
    amp_dtype: str = PRECISION("auto", "autocast dtype: auto (CUDA: bf16 from compute capability 8.0, else fp16 with a "
                                       "GradScaler, a T4 is 7.5; CPU: bf16 where native and measured faster, else fp32), "
                                       "bf16 or fp16 (on a CPU too: --device cpu "
                                       "--amp-dtype fp16 runs a T4's fp16 step code, GradScaler included)",
                               choices=AMP_DTYPES)
    grad_scale_init: float = PRECISION(2.0**16, "fp16 only: the GradScaler's first loss scale (it halves at every "
                                                "step whose gradients overflow, which is then skipped and counted)")
    channels_last: bool = PRECISION(True, CHANNELS_LAST_HELP)
    compile: bool = PRECISION(False, "torch.compile the model (CUDA; slower start, faster steps)")
    compile_mode: str = PRECISION("default", "torch.compile mode with --compile: reduce-overhead uses CUDA graphs, "
                                             "max-autotune also searches kernels (minutes at start)",
                                  choices=["default", "reduce-overhead", "max-autotune"])
    cuda_graphs: bool = PRECISION(False, "capture the model's step in CUDA graphs (torch.compile, mode reduce-overhead, "
                                         "static shapes): far fewer kernel launches for small steps; needs --batch-size "
                                         "divisible by --grad-accum and the cached data path (not --loading stream)")
    gpu_memory_gb: float = PRECISION(0.0, "use at most this many GiB of GPU memory (0 = all), tiles, validation "
                                          "batches and device-held images included; 14 rehearses a 16 GB T4 (14.7 GiB, "
                                          "less the CUDA context) on a larger GPU")
    threads: int = PRECISION(0, "CPU threads for torch (0 = torch's default)")
    deterministic: bool = PRECISION(False, "deterministic algorithms (bit-identical reruns, slower on GPU)")

    def _check_precision(self):
        yield "device", self.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", self.device), \
            "auto, cpu, cuda or cuda:N"
        yield "grad_scale_init", self.grad_scale_init > 0, "more than 0"
        yield "gpu_memory_gb", self.gpu_memory_gb >= 0, "0 (all) or more"
        yield "threads", self.threads >= 0, "0 (torch's default) or more"
        static = (self.compile or self.cuda_graphs) and self.device != "cpu"     # both are idle on a CPU
        yield "grad_accum", not static or self.batch_size % self.grad_accum == 0, \
            (f"must divide --batch-size ({self.batch_size}) with --compile or --cuda-graphs: uneven micro-batches "
             f"would recompile the model")
        yield "cuda_graphs", not (self.cuda_graphs and self.loading == "stream"), \
            "off with --loading stream (a window may drop samples: the shapes are not static)"

    # -- the run's files and views ---------------------------------------------------------------------------
    config: str = RUN("", "a recipe: a TOML file of these settings by name (configs/*.toml; keys at the top level "
                          "or under [model], [data], [optimisation], [precision], [run], [kaggle]); flags given "
                          "here override it; config.json keeps its name and sha256")
    config_sha256: str = option("", "sha256 of the recipe file's bytes", group="run", internal=True)
    run: str = RUN("", "run name: outputs go to logs/<run>/ (default: model and time); under torchrun "
                       "write --run-name (torchrun mistakes --run for its --run-path)", aliases=["--run-name"])
    resume: str = RUN("", "continue from logs/<run>/last.ckpt")
    checkpoint_every: int = RUN(500, "also write last.ckpt every N steps (0 = only at epoch ends)")
    sample_every: int = RUN(5, "write an LR | bicubic | SR | HR picture every N epochs")
    metric: str = RUN("auto", "the leaderboard figure the summary names: score = PSNR + 40 SSIM (GNR638) or psnr "
                              "(SRGB); auto = the competition's, when it is a known one (saved configs' "
                              "psnr+40ssim reads as score)", choices=["auto", "score", "psnr"])
    tracker: str = RUN("", "also log to tensorboard (logs/<run>/tensorboard) or mlflow (logs/mlflow.db); "
                           "needs requirements-extras.txt", choices=TRACKERS)
    quiet: bool = RUN(False, "no progress bars or progress lines")

    def _check_run(self):
        yield "checkpoint_every", self.checkpoint_every >= 0, "0 (epoch ends only) or more"
        yield "sample_every", self.sample_every >= 0, "0 (never) or more"

    # -- the Kaggle session (read by the kernels; session_hours by train.py too) -----------------------------
    session_hours: float = KAGGLE(0.0, "plan the run inside a session of this many hours (Kaggle: 12): training "
                                       "stops in time to predict the test set (with x8 TTA when --predict-tta asks "
                                       "and it fits), write the CSV and keep --margin-minutes spare; 0 = no plan")
    predict_tta: bool = KAGGLE(False, "the kernel predicts with x8 TTA (the session plan drops it when it would not "
                                      "fit in what is left of the session)")
    margin_minutes: float = KAGGLE(30.0, "minutes of the session kept spare: the final check, the report, start-up "
                                         "and what the estimates miss")
    csv_format: str = KAGGLE("auto", "the kernel's CSV: png (id,Encoded_Image), rle (SRGB's id,filename,rle), or "
                                     "auto (the sample submission's)", choices=["auto", "png", "rle"])
    attach: str = KAGGLE("", "what the recipe needs attached on Kaggle, said when it is missing (e.g. the dataset "
                             "holding --init-weights)")

    def _check_kaggle(self):
        yield "session_hours", self.session_hours >= 0, "0 (no session plan) or more, such as 12"
        yield "margin_minutes", self.margin_minutes >= 0, "0 or more"

    def problems(self) -> list:
        """(field, what is allowed) for each value out of its range, every group's checks."""
        found = []
        for group in GROUPS:
            found += [(name, allowed) for name, ok, allowed in getattr(self, f"_check_{group}")() if not ok]
        return found

    def check(self, where: dict = None):
        """The first value out of its range as a FlagError, named where it was set (`where`:
        field -> "--flag" or "FILE: key"; by default the flag)."""
        for name, allowed in self.problems()[:1]:
            raise FlagError(f"{(where or {}).get(name, '--' + name.replace('_', '-'))} = {getattr(self, name)!r}: "
                            f"{allowed}")


    def without_effect(self, given, cuda: bool, fp16: bool) -> list:
        """Of the settings in `given` (the command line's and the recipe's), those that
        have no effect under the others, each with why: [(field, reason)]. `cuda`: training
        runs on a GPU; `fp16`: its steps run in fp16 with a GradScaler."""
        from srx4.models import ARCHS
        idle = {
            "ssim_weight": (self.loss != "l1+ssim", "only with --loss l1+ssim"),
            "vgg_weight": (self.loss != "l1+vgg", "only with --loss l1+vgg"),
            "vgg_weights": (self.loss != "l1+vgg", "only with --loss l1+vgg"),
            "compile": (self.compile and not cuda, "torch.compile is used on CUDA only"),
            "compile_mode": (not (self.compile and cuda), "only with --compile on CUDA"),
            "cuda_graphs": (self.cuda_graphs and not cuda, "CUDA graphs are a GPU's"),
            "grad_scale_init": (not fp16, "only when the steps run in fp16"),
            "gpu_memory_gb": (not cuda, "only on a GPU"),
            "patience": (self.val_fraction == 0, "no validation split (--val-fraction 0)"),
            "select": (self.val_fraction == 0, "no validation split (--val-fraction 0)"),
        }
        model_flags = ("num_blocks", "channels", "bicubic_residual", "srcnn_kernels", "y_only")
        trainable = ARCHS.get(self.model)
        for name in model_flags:
            if self.init_weights:
                idle[name] = (True, "the model is the one --init-weights holds")
            elif trainable is not None and name not in trainable.train_flags and not (
                    name == "srcnn_kernels" and self.model == "srcnn"):
                idle[name] = (True, f"--model {self.model} does not use it")
        return [(name, idle[name][1]) for name in given if name in idle and idle[name][0]]


OLD_SPELLINGS = {"metric": OLD_METRIC_NAMES}     # values saved configs may hold


def from_saved(saved: dict, overrides: dict = None) -> TrainConfig:
    """A TrainConfig from a saved dict (config.json, last.ckpt's train_config), with
    `overrides` (the flags given on this command line) on top; old spellings of values
    read as today's."""
    known = {f.name for f in fields(TrainConfig)}
    values = {k: OLD_SPELLINGS.get(k, {}).get(v, v) if isinstance(v, str) else v
              for k, v in saved.items() if k in known}
    values.update(overrides or {})
    return TrainConfig(**values)
