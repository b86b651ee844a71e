"""The precision decision, made in one place: which dtype training steps, validation
and prediction autocast to, whether the step runs channels-last, whether fp16 needs a
GradScaler, and why.

Inputs: the device (a GPU's compute capability; a CPU's bf16 instructions,
`system.cpu_has_bf16`), the flags (--amp, --amp-dtype, --channels-last), the model's
ModelSpec (supports_half / supports_bfloat16) and architecture.

- CUDA: bf16 from compute capability 8.0 (Ampere) on, fp16 before (Kaggle's T4 is 7.5)
  with a GradScaler for training; validation and prediction in the same dtype.
- CPU, training: bf16 channels-last where the CPU computes bf16 natively and the model is
  measured faster so (CPU_BF16_TRAINING), else fp32 NCHW; validation in fp32 (exact
  across process counts), except `--amp-dtype fp16`, the T4's steps and validation
  rehearsed (CPU fp16 autocast, emulated and slow).
- CPU, prediction: bf16 where native (2x fp32 there), else fp32.
- A model whose spec says it does not run in a dtype runs in fp32.

    precision = for_training(device, amp=True, amp_dtype="auto", channels_last=True, spec=model.spec,
                             architecture="srresnet")
    precision.line()          # "precision: train bf16, channels-last; validate fp32 (...)"
    precision.train_dtype     # torch.bfloat16 (None = fp32)

The training decision is logged in one line and saved in config.json and last.ckpt; a
resume that decides differently (another CPU, another GPU) says so (`changed_from`).
"""
from dataclasses import asdict, dataclass

import torch

from srx4.core.errors import FlagError
from srx4.core.system import cpu_has_bf16

AMP_DTYPES = ["auto", "bf16", "fp16"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
NAMES = {v: k for k, v in DTYPES.items()}

# Models measured to train faster on a CPU with native bf16 under bf16 autocast in channels-last than
# in fp32 NCHW (benchmarks/bench_cpu_amp.py, full size, batch 16, LR patch 24, 2 threads, AMD EPYC
# with avx512_bf16; benchmarks/RESULTS.md): the speed-up measured. A model not listed (SRCNN, foreign
# models) trains in fp32 there until measured; --amp-dtype bf16 / --no-amp choose by hand.
CPU_BF16_TRAINING = {"srresnet": 2.16, "edsr": 2.52, "span": 1.80}


def amp_dtype_for(capability) -> torch.dtype:
    """bf16 only from compute capability 8.0 (Ampere) on, where cuDNN has bf16 convolutions;
    fp16 (with a GradScaler when training) before, e.g. on Kaggle's T4 (7.5).
    `torch.cuda.is_bf16_supported()` is not used: it says True on a T4 (emulation)."""
    return torch.bfloat16 if tuple(capability) >= (8, 0) else torch.float16


def _checked(choice: str) -> str:
    if choice not in AMP_DTYPES:
        raise FlagError(f"--amp-dtype {choice!r}: expected one of {', '.join(AMP_DTYPES)}")
    return choice


def _supported(spec, dtype):
    """`dtype`, or None (fp32) where the model says it does not run in it (foreign models:
    SwinIR, HAT, ... are not fp16-safe)."""
    if spec is not None and dtype == torch.float16 and not spec.supports_half:
        return None
    if spec is not None and dtype == torch.bfloat16 and not spec.supports_bfloat16:
        return None
    return dtype


def for_inference(device, amp: bool = True, choice="auto", spec=None):
    """The autocast dtype (None = fp32) of running a model (prediction): on CUDA the
    GPU's native one or the one asked; on a CPU bf16 where native (auto) or asked. A
    torch dtype as `choice` is a decision already made (validation's, `Precision.validate`:
    fp16 on a CPU there is the T4's validation rehearsed) and is kept."""
    device = torch.device(device)
    if not amp:
        return None
    if isinstance(choice, torch.dtype):
        dtype = choice
    elif device.type == "cuda":
        dtype = DTYPES[choice] if _checked(choice) != "auto" else amp_dtype_for(torch.cuda.get_device_capability(device))
    else:
        dtype = torch.bfloat16 if _checked(choice) == "bf16" or (choice == "auto" and cpu_has_bf16()) else None
    return _supported(spec, dtype)


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():        # a decision made for a GPU elsewhere (tests, plans)
            return str(device)
        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor})"
    return f"CPU ({'with' if cpu_has_bf16() else 'without'} native bf16)"


@dataclass(frozen=True)
class Precision:
    train: str             # the training step's autocast: "bf16", "fp16" or "fp32"
    validate: str          # validation's and the final check's
    channels_last: bool    # the training step's memory layout
    grad_scaler: bool      # fp16 training: the loss scaled against underflow
    device: str            # what it was decided for
    why: str

    @property
    def train_dtype(self):
        return DTYPES.get(self.train)

    @property
    def validate_dtype(self):
        return DTYPES.get(self.validate)

    def line(self) -> str:
        layout = ", channels-last" if self.channels_last else ""
        scaler = " with a GradScaler" if self.grad_scaler else ""
        return f"precision: train {self.train}{scaler}{layout}; validate {self.validate}; {self.device}: {self.why}"

    def as_dict(self) -> dict:
        return asdict(self)

    def changed_from(self, saved: dict):
        """One line when a saved decision (config.json / last.ckpt) differs from this one, else None."""
        if not saved:
            return None
        keys = ("train", "validate", "channels_last", "grad_scaler")
        if all(saved.get(k) == getattr(self, k) for k in keys):
            return None
        before = ", ".join(f"{k} {saved.get(k)}" for k in keys)
        now = ", ".join(f"{k} {getattr(self, k)}" for k in keys)
        return (f"precision differs from the run's start (it was decided on {saved.get('device', '?')}: {before}; "
                f"here {now}): continuing; the numbers of later epochs may differ slightly")


def for_training(device, amp: bool, amp_dtype: str, channels_last: bool, spec=None,
                 architecture: str = "") -> Precision:
    """The whole decision of a training run (see the module's docstring)."""
    device = torch.device(device)
    _checked(amp_dtype)
    if device.type == "cuda":
        dtype = for_inference(device, amp, amp_dtype, spec)
        why = "--no-amp" if not amp else "this GPU's native dtype" if amp_dtype == "auto" else f"--amp-dtype {amp_dtype}"
        if amp and dtype is None:
            why += "; the model does not run in it"
        name = NAMES.get(dtype, "fp32")
        return Precision(name, name, channels_last, dtype == torch.float16, device_name(device), why)
    measured = amp and amp_dtype == "auto" and cpu_has_bf16() and architecture in CPU_BF16_TRAINING
    if measured:
        wanted, why = torch.bfloat16, (f"bf16 chosen: {architecture} trains {CPU_BF16_TRAINING[architecture]:.2f}x "
                                       f"faster than fp32 on a CPU with native bf16")
    elif not amp:
        wanted, why = None, "--no-amp"
    elif amp_dtype != "auto":
        wanted, why = DTYPES[amp_dtype], f"--amp-dtype {amp_dtype}"
    elif cpu_has_bf16():
        wanted, why = None, f"{architecture or 'this model'} not measured faster in bf16 on a CPU"
    else:
        wanted, why = None, "no native bf16 on this CPU"
    dtype = _supported(spec, wanted)
    if wanted is not None and dtype is None:
        why += f"; the model does not run in {NAMES[wanted]}"
    name = NAMES.get(dtype, "fp32")
    cpu_bf16_layout = channels_last and measured and dtype == torch.bfloat16    # channels-last was measured with it
    validate = "fp16" if dtype == torch.float16 else "fp32"      # fp16 asked for: the T4's validation rehearsed
    return Precision(name, validate, cpu_bf16_layout, dtype == torch.float16, device_name(device), why)
