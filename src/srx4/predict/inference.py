"""Running a model on whole images: tiled when big, batched, AMP on CUDA, x8 TTA.

`super_resolve(model, lr)`: lr (N, 3, H, W) float in [0, 1] -> sr (N, 3, sH, sW)
float, unclamped. Tiles overlap by at least the model's receptive radius, so a
tiled result equals the whole-image result (up to float rounding). The tile
size is chosen up front from an estimate of the memory a tile needs, within the
memory this process may use (`--gpu-memory-gb` included; on CPU a process out of
memory is killed, not warned); an out-of-memory error is retried with smaller
tiles, and the size that fitted is remembered for the next images.
"""
import copy
import math

import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch import nn

from srx4.core import gpu_memory
from srx4.core.precision import for_inference
from srx4.models.base import ModelSpec


def memory_budget(device: torch.device) -> int:
    """Bytes one forward pass may use: 60% of what this process may still allocate on a
    GPU (within --gpu-memory-gb, srx4.gpu_memory), 40% of the free RAM (at most 6 GiB) on a CPU."""
    if device.type == "cuda":
        return int(gpu_memory.free_bytes(device) * 0.6)
    from srx4.core.system import available_ram_bytes
    return min(int(available_ram_bytes() * 0.4), 6 << 30)


# LR tile sides that ran after an out-of-memory error, per (device, model's bytes per LR
# pixel, batch): later calls start there instead of failing again at every image
_tiles_that_fit = {}


def auto_tile(spec: ModelSpec, height: int, width: int, batch: int, device) -> int:
    """LR tile side (0 = whole image) so one forward fits the memory budget of the device
    the model runs on (an ONNX Runtime session on the CPU: host RAM, whatever `device`)."""
    device = torch.device(spec.runs_on or device)
    per_pixel = spec.bytes_per_lr_pixel            # declared by each model (srx4.models.base)
    pixels = memory_budget(device) // max(per_pixel, 1) // max(batch, 1)
    remembered = _tiles_that_fit.get((str(device), per_pixel, batch))
    if height * width <= pixels and not (remembered and max(height, width) > remembered):
        return 0
    multiple = max(8, spec.size_multiple)
    tile = max(32, int(math.sqrt(pixels)) // multiple * multiple)
    return min(tile, remembered) if remembered else tile


def auto_batch(spec: ModelSpec, height: int, width: int, device, most: int = 64) -> int:
    """Images of height x width per forward pass: about one GNR638 LR frame's pixels on a
    CPU (batching whole frames there costs more in memory traffic than it saves), four on a
    GPU, so 64 x 64 test crops run dozens at a time instead of one; within the memory
    budget (no tiling of small images), at most `most`."""
    device = torch.device(spec.runs_on or device)
    pixels = max(1, height * width)
    target = (4 if device.type == "cuda" else 1) * 480 * 270
    fits = memory_budget(device) // max(spec.bytes_per_lr_pixel * pixels, 1)
    return int(max(1, min(most, target // pixels, fits)))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of an eval-mode model with every Conv2d -> BatchNorm2d pair in a
    Sequential merged into one Conv2d (torch's `fuse_conv_bn_eval`: same outputs,
    one pass fewer) and every re-parameterised layer (one with `inference_form()`)
    replaced by the plain convolution it is."""
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):   # re-parameterised layers (SPAN's RepConv3) -> their plain conv
        for name, child in module.named_children():
            if hasattr(child, "inference_form"):
                setattr(module, name, child.inference_form())
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        layers = list(module)
        for k in range(len(layers) - 1):
            conv, bn = layers[k], layers[k + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module[k], module[k + 1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return model


def prepare_model(model: nn.Module, fold_bn: bool = True, channels_last: bool = True) -> nn.Module:
    """The inference form of a model: BatchNorm folded, channels-last memory format."""
    model = fold_batchnorm(model) if fold_bn else model.eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        model.channels_last = True
    return model


class Ensemble:
    """The mean of several models' outputs (predict.py / evaluate.py --weights a b c):
    runs like one model (tiling uses the widest receptive radius); each member in its
    own inference form."""

    def __init__(self, members):
        specs = [m.spec for m in members]
        scales = {s.scale for s in specs}
        if len(scales) > 1:
            raise ValueError(f"an ensemble needs one scale, got {sorted(scales)}")
        self.members = list(members)
        places = {s.runs_on for s in specs}
        self.spec = ModelSpec(specs[0].scale, max(s.receptive_radius for s in specs),
                              max(s.bytes_per_lr_pixel for s in specs), math.lcm(*(s.size_multiple for s in specs)),
                              all(s.supports_half for s in specs), all(s.supports_bfloat16 for s in specs),
                              channels_last=False,            # each member gets its own layout
                              runs_on=places.pop() if len(places) == 1 else None)
        self.scale = self.spec.scale

    def prepared(self, fold_bn: bool = True, channels_last: bool = True):
        """The ensemble of the members' inference forms (torch members; others as they are)."""
        return Ensemble([prepare_model(m, fold_bn, channels_last) if isinstance(m, nn.Module) else m
                         for m in self.members])

    def eval(self):
        return self

    def __call__(self, lr):
        total = None
        for member in self.members:
            x = lr.contiguous(memory_format=torch.channels_last) if member.spec.channels_last else lr
            out = member(x).float()
            total = out if total is None else total + out
        return total / len(self.members)


def _forward(model, lr, amp_dtype):
    if model.spec.channels_last:
        lr = lr.contiguous(memory_format=torch.channels_last)
    if amp_dtype is not None:
        with torch.autocast(lr.device.type, dtype=amp_dtype):
            return model(lr).float()
    return model(lr)


def _tiled(model, lr, tile: int, overlap: int, scale: int, amp_dtype):
    """Run `model` on overlapping tiles of lr and stitch the centres."""
    n, c, h, w = lr.shape
    out = None
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            y0, x0 = max(top - overlap, 0), max(left - overlap, 0)
            y1, x1 = min(top + tile + overlap, h), min(left + tile + overlap, w)
            sr_tile = _forward(model, lr[:, :, y0:y1, x0:x1], amp_dtype)   # (N, 3, s(y1-y0), s(x1-x0))
            if out is None:
                out = torch.empty(n, sr_tile.shape[1], h * scale, w * scale, dtype=sr_tile.dtype, device=lr.device)
            th, tw = min(tile, h - top), min(tile, w - left)
            oy, ox = (top - y0) * scale, (left - x0) * scale
            out[:, :, top * scale:(top + th) * scale, left * scale:(left + tw) * scale] = \
                sr_tile[:, :, oy:oy + th * scale, ox:ox + tw * scale]
    return out


@torch.inference_mode()
def super_resolve(model, lr, tile: int = None, amp: bool = True, tta: bool = False, amp_dtype: str = "auto"):
    """lr (N, 3, H, W) in [0, 1] on the model's device -> sr (N, 3, sH, sW).

    tile: LR tile side; None = automatic, 0 = whole image. amp: autocast in `amp_dtype`
    (auto, bf16 or fp16; decided by core/precision.py's `for_inference`: on a CPU only bf16,
    where it is native)."""
    spec = model.spec              # (srx4.models.base.ModelSpec)
    scale = spec.scale
    overlap = int(math.ceil(spec.receptive_radius)) + 2
    amp_dtype = for_inference(lr.device, amp, amp_dtype, spec)
    if tile is None:
        tile = auto_tile(spec, lr.shape[2], lr.shape[3], lr.shape[0], lr.device)

    def run(x, tile):
        if tile and (x.shape[2] > tile or x.shape[3] > tile):
            return _tiled(model, x, tile, overlap, scale, amp_dtype)
        return _forward(model, x, amp_dtype)

    def run_retrying(x):
        size, failed = tile, False
        while True:
            try:
                out = run(x, size)
                if failed:      # remember what fitted: the next image starts there
                    key = (str(torch.device(spec.runs_on or x.device)), spec.bytes_per_lr_pixel, x.shape[0])
                    _tiles_that_fit[key] = size or max(x.shape[2], x.shape[3])
                return out
            except torch.cuda.OutOfMemoryError:      # torch.OutOfMemoryError needs torch 2.5
                if size and size <= 32:
                    raise
                if x.device.type == "cuda":
                    torch.cuda.empty_cache()
                size, failed = max(32, (size or max(x.shape[2], x.shape[3])) // 2), True

    if not tta:
        return run_retrying(lr)
    total = None
    for k in range(8):  # 4 rotations x optional flip, each undone on the output
        x = lr.flip(-1) if k >= 4 else lr
        sr = run_retrying(torch.rot90(x, k % 4, dims=(2, 3)))
        sr = torch.rot90(sr, -(k % 4), dims=(2, 3))
        sr = sr.flip(-1) if k >= 4 else sr
        total = sr if total is None else total + sr
    return total / 8


def estimate_predict_seconds(model, width: int, height: int, device, frames: int = 500, amp: bool = True,
                             amp_dtype: str = "auto") -> float:
    """Seconds predict.py would take for `frames` LR frames of width x height with `model`
    (its inference form) on `device`, without TTA (x8 TTA: 8 times this). Timed on the
    whole frame on a GPU, on a crop of at most 96 x 96 scaled by the pixel count on a CPU
    (the forward is linear in pixels there); decoding and PNG writing not included."""
    import time
    fast = prepare_model(model, fold_bn=True, channels_last=True)
    cpu = torch.device(device).type == "cpu"
    h, w = (min(height, 96), min(width, 96)) if cpu else (height, width)
    lr = torch.rand(1, 3, h, w, device=device)
    super_resolve(fast, lr, amp=amp, amp_dtype=amp_dtype)        # warm-up (cuDNN choice, allocator)
    timings = []
    for _ in range(2):
        if not cpu:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        super_resolve(fast, lr, amp=amp, amp_dtype=amp_dtype)
        if not cpu:
            torch.cuda.synchronize(device)
        timings.append(time.perf_counter() - start)
    return min(timings) * (width * height) / (w * h) * frames


def predict_estimate_line(seconds: float, width: int, height: int, device, frames: int = 500) -> str:
    """One log line: the `seconds` estimate_predict_seconds gave, without and with x8 TTA."""
    fmt = lambda s: f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"  # noqa: E731
    return (f"predicting {frames} test frames of {width}x{height} with this model on {torch.device(device).type}: "
            f"about {fmt(seconds)}, with x8 TTA about {fmt(8 * seconds)} (the forward passes alone)")
