"""Predicting images to PNGs: a whole folder (predict.py) or images in memory
(super_resolve.py, evaluate.py), through one path.

`predict_images(model, images, options, device)`: uint8 images (H, W, 3 or 4) of one
size -> uint8 SR images (sH, sW, 3 or 4), or None for one whose output was not
finite even in fp32 (named on stderr). Alpha, where kept, is bicubic-upscaled.

`predict_folder(predictor, inputs, out_dir, lr_dir, options, device)`: every input
to out_dir/<stem>.png, exactly scale x its size. The folder's manifest
(.srx4-weights.json) names the weights and the LR folder; outputs of other weights
are refused (or replaced with overwrite); finished outputs are skipped, so an
interrupted run resumes. Decoding and PNG encoding run in threads beside the forward
passes (both let go of the GIL); same-size images go through the model together.
"""
import functools
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from srx4.core import layout
from srx4.core.io import write_json
from srx4.core.progress import progress
from srx4.image.codec import ImageError, image_size, read_image, to_uint8_batch, write_png
from srx4.image.resize import resize_tensor
from srx4.models.weights import WeightsError
from srx4.predict.inference import auto_batch, super_resolve

DECODE_AHEAD = 64         # images decoded ahead of the model: bounded memory


@dataclass
class Options:
    """How to run the model on images (predict.py's flags of the same names)."""
    tile: int = -1             # LR tile side; -1 automatic from memory, 0 the whole image
    tta: bool = False          # x8 self-ensemble
    batch_size: int = 0        # images of one size per forward; 0 by size (inference.auto_batch)
    amp: bool = True           # reduced precision where the device runs it natively
    amp_dtype: str = "auto"
    keep_alpha: bool = False   # RGBA out, the alpha bicubic-upscaled
    png_level: int = 1
    overwrite: bool = False    # replace a folder's outputs written by other weights
    quiet: bool = False

    @classmethod
    def of(cls, config):
        """The options a script's config (predict.py's PredictConfig, ...) sets."""
        return cls(**{f: getattr(config, f) for f in cls.__dataclass_fields__ if hasattr(config, f)})


@dataclass
class FolderResult:
    inputs: int                                  # images in the input list
    done_before: int                             # already written by these weights: skipped
    written: int
    failed: list = field(default_factory=list)   # input paths not written (unreadable, or output not finite)
    seconds: float = 0.0

    def speed(self) -> str:
        todo = self.written + len(self.failed)
        rate = todo / max(self.seconds, 1e-9)
        return f"{rate:.1f} images/s" if rate >= 1 else f"{self.seconds / max(todo, 1):.1f} s an image"


def repair_non_finite(sr, lr, names, run, amp):
    """sr (N, 3, sH, sW) as predicted from lr (N, 3, H, W): an image with a NaN or inf
    value (an fp16 overflow, or broken weights) is predicted again in fp32 when it ran in
    reduced precision; one still not finite is named and flagged, never written as
    undefined pixels. Returns (sr, [flag per image])."""
    bad = (~torch.isfinite(sr)).flatten(1).any(dim=1).tolist()          # (N,)
    if not any(bad):
        return sr, bad
    if amp:
        idx = [k for k, b in enumerate(bad) if b]
        print(f"warning: {', '.join(names[k] for k in idx)}: the output was not finite in reduced precision; "
              f"predicted again in fp32", file=sys.stderr, flush=True)
        sr = sr.clone()
        sr[idx] = run(lr[idx], amp=False).to(sr.dtype)
        bad = (~torch.isfinite(sr)).flatten(1).any(dim=1).tolist()
    for name, b in zip(names, bad):
        if b:
            print(f"error: {name}: the model's output has NaN or inf values: not written (are the weights broken? "
                  f"see the run's train.log)", file=sys.stderr, flush=True)
    return sr, bad


def predict_images(model, images, options: Options, device, names=None) -> list:
    """uint8 images (H, W, C) of one size, C = 3 or 4 -> uint8 SR (sH, sW, C) each, or None
    where the output was not finite. The alpha of C = 4 is bicubic-upscaled."""
    names = names or [f"image {k}" for k in range(len(images))]
    x = torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2).float() / 255  # (N, C, H, W) in [0, 1]
    run = functools.partial(super_resolve, model, tile=None if options.tile < 0 else options.tile,
                            tta=options.tta, amp_dtype=options.amp_dtype)
    sr = run(x[:, :3].contiguous(), amp=options.amp)                                       # (N, 3, sH, sW)
    sr, broken = repair_non_finite(sr, x[:, :3], names, run, options.amp)
    if x.shape[1] == 4:
        sr = torch.cat([sr, resize_tensor(x[:, 3:].double(), model.scale).to(sr.dtype)], dim=1)
    return [None if bad else one for one, bad in zip(to_uint8_batch(sr), broken)]        # (sH, sW, C) each


def batches_by_size(items, batch_size):
    """Group consecutive decoded (path, image) items of one size into lists of at most
    batch_size(height, width) (an int: that many whatever the size)."""
    size_for = batch_size if callable(batch_size) else (lambda h, w: batch_size)
    batch, limit = [], 0
    for item in items:
        if batch and (item[1].shape != batch[0][1].shape or len(batch) == limit):
            yield batch
            batch = []
        if not batch:                        # the limit asked once a batch (it reads the free memory)
            limit = size_for(*item[1].shape[:2])
        batch.append(item)
    if batch:
        yield batch


def check_manifest(out_dir: Path, identity: dict, overwrite: bool, lr_dir: Path):
    """Refuse to mix outputs of different weights in one folder; record the weights and the LR
    folder the PNGs are made from (make_submission.py and score.py read it)."""
    manifest = out_dir / layout.PNG_MANIFEST
    if manifest.is_file():
        previous = json.loads(manifest.read_text())
        same = ({k: previous.get(k) for k in identity} == identity       # a torch identity has no "backend"
                and previous.get("backend", "torch") == identity.get("backend", "torch"))
        if not same and not overwrite:
            raise WeightsError(f"{out_dir}: written by other weights ({previous.get('weights', previous.get('model'))}"
                               f"); pass --overwrite to replace, or choose another --output")
        if not same:
            for png in out_dir.glob("*.png"):
                png.unlink()
    write_json(manifest, {**identity, layout.PNG_MANIFEST_LR_DIR: str(Path(lr_dir).resolve())})


def is_done(out_path: Path, lr_path: Path, scale: int) -> bool:
    try:
        w, h = image_size(lr_path)
        return out_path.is_file() and image_size(out_path) == (w * scale, h * scale)
    except ImageError:
        return False


def predict_folder(model, identity: dict, inputs, out_dir: Path, lr_dir: Path, options: Options,
                   device) -> FolderResult:
    """Every LR path of `inputs` to out_dir/<stem>.png with `model` (its inference form);
    `identity` (the weights, Predictor.identity) goes into the folder's manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    check_manifest(out_dir, {**identity, "tta": options.tta}, options.overwrite, lr_dir)
    todo = [p for p in inputs if not is_done(out_dir / f"{p.stem}.png", p, model.scale)]
    result = FolderResult(len(inputs), len(inputs) - len(todo), 0)
    print(f"{len(inputs)} images in {lr_dir}; {result.done_before} already done; writing to {out_dir}")
    started = time.time()

    def decode(path):
        try:
            return path, read_image(path, keep_alpha=options.keep_alpha)
        except ImageError as err:
            return path, err

    def write(path, sr_img):
        write_png(out_dir / f"{path.stem}.png", sr_img, options.png_level)

    bar, hr_pixels = progress(total=len(todo), unit="img", desc="predict", quiet=options.quiet), 0
    batch_for = options.batch_size or functools.partial(auto_batch, model.spec, device=device)  # (h, w) -> images
    threads = max(2, min(16, os.cpu_count() or 2))
    with ThreadPoolExecutor(threads) as readers, ThreadPoolExecutor(threads) as writers:
        pending = []
        for chunk_start in range(0, len(todo), DECODE_AHEAD):
            decoded = []
            for path, img in readers.map(decode, todo[chunk_start:chunk_start + DECODE_AHEAD]):
                if isinstance(img, Exception):
                    print(f"skipped: {img}", file=sys.stderr)
                    result.failed.append(path)
                    bar.update(1)
                else:
                    decoded.append((path, img))
            for batch in batches_by_size(decoded, batch_for):
                outputs = predict_images(model, [img for _, img in batch], options, device,
                                         [p.name for p, _ in batch])
                for (path, _), sr_img in zip(batch, outputs):
                    if sr_img is None:
                        result.failed.append(path)
                    else:
                        pending.append(writers.submit(write, path, sr_img))
                        hr_pixels += sr_img.shape[0] * sr_img.shape[1]
                bar.update(len(batch))
                bar.set_postfix(hr_mpix_s=f"{hr_pixels / 1e6 / max(time.time() - started, 1e-9):.2f}")
            finished = [f for f in pending if f.done()]
            for f in finished:      # surface write errors early and let finished writes go
                f.result()
            pending = [f for f in pending if f not in finished]
        for f in pending:
            f.result()
    bar.close()
    result.written = len(todo) - len(result.failed)
    result.seconds = time.time() - started
    return result
