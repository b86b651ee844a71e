"""Super-resolve every test LR image to a PNG, with the best weights of a run.

In:  --weights logs/<run>/best.safetensors or logs/<run>/ (default: the run train.py
     finished last, recorded in logs/last_run.json),
     --input a folder of LR images (default: data/test/lr, Kaggle's test folder,
     else the demo's test LR).
Out: one PNG per input, same file name, exactly scale x its size, in --output
     (default submissions/<run>/png/), plus .srx4-weights.json naming the weights
     that wrote the folder, and submissions/last_prediction.json naming the folder for
     make_submission.py. RGB out; --keep-alpha keeps an upscaled alpha channel.

    python src/predict.py
    python src/predict.py --weights logs/srresnet_a --input data/test/lr --tta
    python src/predict.py --model bicubic            # the baseline through the same path
    python src/predict.py --weights logs/a --val-of logs/a   # then: python src/score.py
        submissions/a/val_png --hr data/train/hr  -> the local validation score

Finished outputs are skipped, so an interrupted run resumes; an unreadable
input is named and the exit status is 1.
"""
import functools
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from srx4.core import layout
from srx4.core import paths
from srx4.models.weights import WeightsError, resolve_weights
from srx4.core.io import file_sha256, write_json
from srx4.core.errors import JobFailed, MissingData
from srx4.core.cli import CHANNELS_LAST_HELP, option, parse_config, run_main
from srx4.image.codec import ImageError, image_size, list_images, read_image, to_uint8_batch, write_png
from srx4.image.resize import resize_tensor
from srx4.core.system import AMP_DTYPES, resolve_device
from srx4.predict.inference import Ensemble, auto_batch, prepare_model, super_resolve
from srx4.models import Bicubic
from srx4.predict.onnx import OnnxModel, load_runnable
from srx4.core.progress import progress
from srx4.runs.runlog import SUMMARY_NAME, bicubic_warning
from srx4.submit.submission_log import LR_DIR_KEY, MANIFEST  # .srx4-weights.json in each PNG folder: what wrote it


@dataclass
class PredictConfig:
    weights: list = option([], "weights file(s) or run folder(s) (default: the run train.py finished last); "
                               "several: an ensemble, their outputs averaged")
    val_of: str = option("", "predict a run's validation images (logs/<run>/): the local score to compare "
                             "with the leaderboard; writes submissions/<run>/val_png")
    input: str = option("", "folder of test LR images (default: data/test/lr, Kaggle's, else the demo's)")
    output: str = option("", "PNG folder (default: submissions/<run>/png)")
    model: str = option("", "'bicubic' for the MATLAB-bicubic baseline instead of weights", choices=["", "bicubic"])
    scale: int = option(4, "scale for --model bicubic (weights carry their own)")
    tile: int = option(-1, "LR tile side (-1 = automatic from memory, 0 = whole image)")
    tta: bool = option(False, "x8 self-ensemble (flips and rotations, averaged)")
    batch_size: int = option(0, "images of one size per forward pass (0 = by size: about four 480x270 frames' "
                                "pixels on a GPU, one on a CPU, so small test crops go dozens at a time)")
    keep_alpha: bool = option(False, "write RGBA with the alpha upscaled, for inputs that have alpha")
    png_level: int = option(1, "PNG compression 0-9 (higher = smaller files, slower)")
    overwrite: bool = option(False, "replace outputs written by other weights")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    amp: bool = option(True, "mixed precision on CUDA")
    amp_dtype: str = option("auto", "autocast dtype on CUDA: auto (bf16 from compute capability 8.0, "
                                    "else fp16: a T4 is 7.5), bf16 or fp16", choices=AMP_DTYPES)
    fold_bn: bool = option(True, "fold BatchNorm into the convolutions (same outputs, faster)")
    channels_last: bool = option(True, CHANNELS_LAST_HELP)
    backend: str = option("auto", "torch, or onnxruntime (exports the weights to ONNX first; needs "
                                  "requirements-extras.txt); auto = onnxruntime for a .onnx file, else torch",
                          choices=["auto", "torch", "onnxruntime"])
    quiet: bool = option(False, "no progress bars or progress lines")


def file_digest(path: Path) -> str:
    return file_sha256(path)[:16]


def load_predictor(config, device):
    """(model, identity dict, run name) for the weights or the bicubic baseline."""
    if config.model == "bicubic":
        return Bicubic(config.scale).to(device), {"model": "bicubic", "scale": config.scale}, "bicubic"
    last = paths.last_run()
    given = config.weights or ([last] if last else [])
    if not given:
        raise WeightsError(f"no finished run recorded in {paths.logs_dir() / paths.LAST_RUN}: run python "
                           f"src/train.py first, or pass --weights or --model bicubic")
    if len(given) > 1:
        return load_ensemble(given, device, config.backend)
    weights = resolve_weights(given[0])
    model, model_config = load_runnable(weights, device, config.backend)
    backend = "onnxruntime" if isinstance(model, OnnxModel) else "torch"
    print(f"weights: {weights}" + ("" if config.weights else " (the run train.py finished last)")
          + (f"; ONNX Runtime ({', '.join(model.providers)})" if backend == "onnxruntime" else ""))
    warn_if_worse_than_bicubic(weights.parent)
    identity = {"weights": str(weights.resolve()), "sha256": file_digest(weights), **model_config}
    if backend != "torch":      # kept out for torch: folders written before this key existed stay resumable
        identity["backend"] = backend
    return model, identity, weights.parent.name if weights.suffix != ".onnx" else weights.stem


def load_ensemble(given, device, backend):
    """(Ensemble, identity, run name) for several weights: their outputs averaged."""
    members, files = [], [resolve_weights(w) for w in given]
    for weights in files:
        model, _ = load_runnable(weights, device, backend)
        members.append(model)
        warn_if_worse_than_bicubic(weights.parent)
    try:
        ensemble = Ensemble(members)
    except ValueError as err:
        raise WeightsError(f"{', '.join(map(str, files))}: {err}") from None
    print(f"weights: an ensemble of {len(files)}, outputs averaged: " + ", ".join(map(str, files)))
    identity = {"weights": ";".join(str(w.resolve()) for w in files), "sha256": ";".join(map(file_digest, files)),
                "ensemble": len(files), "scale": ensemble.scale}
    return ensemble, identity, "+".join(w.parent.name if w.suffix != ".onnx" else w.stem for w in files)


def warn_if_worse_than_bicubic(run_dir: Path):
    """Repeat train.py's warning when its final check found the weights worse than bicubic."""
    summary = run_dir / SUMMARY_NAME
    try:
        report = json.loads(summary.read_text())
    except (OSError, ValueError):
        return
    if report.get("worse_than_bicubic"):
        print(bicubic_warning(report["model"]["psnr"], report["bicubic"]["psnr"], report.get("checked_on", "?")),
              file=sys.stderr)


def validation_inputs(run_dir: Path):
    """(LR folder, validation file names) of a training run, from its config.json and split.json."""
    config_path, split_path = run_dir / layout.CONFIG, run_dir / layout.SPLIT
    if not (config_path.is_file() and split_path.is_file()):
        raise MissingData(f"{run_dir}: no config.json and split.json (is it a training run folder?)")
    data = Path(json.loads(config_path.read_text())["data"])
    names = json.loads(split_path.read_text())["val"]
    if not names:
        raise MissingData(f"{run_dir}: the run has no validation split (--val-fraction 0)")
    return data / "lr", names


def check_manifest(out_dir: Path, identity: dict, overwrite: bool, lr_dir: Path):
    """Refuse to mix outputs of different weights in one folder; record the weights and the LR
    folder the PNGs are made from (make_submission.py and score.py read it)."""
    manifest = out_dir / MANIFEST
    if manifest.is_file():
        previous = json.loads(manifest.read_text())
        same = {k: previous.get(k) for k in identity} == identity
        if not same and not overwrite:
            raise WeightsError(f"{out_dir}: written by other weights ({previous.get('weights', previous.get('model'))}"
                               f"); pass --overwrite to replace, or choose another --output")
        if not same:
            for png in out_dir.glob("*.png"):
                png.unlink()
    write_json(manifest, {**identity, LR_DIR_KEY: str(Path(lr_dir).resolve())})


def is_done(out_path: Path, lr_path: Path, scale: int) -> bool:
    try:
        w, h = image_size(lr_path)
        return out_path.is_file() and image_size(out_path) == (w * scale, h * scale)
    except ImageError:
        return False


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


def main(argv=None):
    config = parse_config(PredictConfig, "Super-resolve test LR images to PNGs.", argv)
    device = resolve_device(config.device)
    model, identity, run_name = load_predictor(config, device)
    if isinstance(model, Ensemble):
        model = model.prepared(config.fold_bn, config.channels_last)
    elif not isinstance(model, OnnxModel):
        model = prepare_model(model, config.fold_bn, config.channels_last)
    identity["tta"] = config.tta
    if config.val_of:
        in_dir, names = validation_inputs(Path(config.val_of))
        out_dir = Path(config.output) if config.output else paths.submissions_dir() / run_name / "val_png"
    else:
        in_dir, names = Path(config.input) if config.input else paths.default_test_dir(), None
        out_dir = Path(config.output) if config.output else paths.submissions_dir() / run_name / "png"
    if not in_dir.is_dir():
        raise MissingData(f"{in_dir}: input folder not found")
    out_dir.mkdir(parents=True, exist_ok=True)
    check_manifest(out_dir, identity, config.overwrite, in_dir)
    scale = model.scale
    inputs = [in_dir / n for n in names] if names is not None else list_images(in_dir)
    todo = [p for p in inputs if not is_done(out_dir / f"{p.stem}.png", p, scale)]
    print(f"{len(inputs)} images in {in_dir}; {len(inputs) - len(todo)} already done; writing to {out_dir}")
    failed, started = [], time.time()

    def decode(path):
        try:
            return path, read_image(path, keep_alpha=config.keep_alpha)
        except ImageError as err:
            return path, err

    def write(path, sr_img):
        write_png(out_dir / f"{path.stem}.png", sr_img, config.png_level)

    bar, hr_pixels = progress(total=len(todo), unit="img", desc="predict"), 0
    batch_for = functools.partial(auto_batch, model.spec, device=device)       # (h, w) -> images per pass
    threads = max(2, min(16, os.cpu_count() or 2))  # PNG decode/encode release the GIL
    with ThreadPoolExecutor(threads) as readers, ThreadPoolExecutor(threads) as writers:
        pending = []
        for chunk_start in range(0, len(todo), 64):  # decode ahead in chunks: bounded memory
            decoded = []
            for path, img in readers.map(decode, todo[chunk_start:chunk_start + 64]):
                if isinstance(img, Exception):
                    print(f"skipped: {img}", file=sys.stderr)
                    failed.append(path)
                    bar.update(1)
                else:
                    decoded.append((path, img))
            for batch in batches_by_size(decoded, config.batch_size or batch_for):
                imgs = np.stack([img for _, img in batch])                               # (N, H, W, 3 or 4)
                x = torch.from_numpy(imgs).to(device).permute(0, 3, 1, 2).float() / 255  # (N, C, H, W) in [0, 1]
                run = functools.partial(super_resolve, model, tile=None if config.tile < 0 else config.tile,
                                        tta=config.tta, amp_dtype=config.amp_dtype)
                sr = run(x[:, :3].contiguous(), amp=config.amp)                                       # (N, 3, sH, sW)
                sr, broken = repair_non_finite(sr, x[:, :3], [p.name for p, _ in batch], run, config.amp)
                if x.shape[1] == 4:  # alpha: bicubic-upscaled
                    sr = torch.cat([sr, resize_tensor(x[:, 3:].double(), scale).to(sr.dtype)], dim=1)
                for (path, _), one, bad in zip(batch, to_uint8_batch(sr), broken):    # (sH, sW, 3 or 4)
                    if bad:
                        failed.append(path)
                    else:
                        pending.append(writers.submit(write, path, one))
                hr_pixels += sr.shape[0] * sr.shape[2] * sr.shape[3]
                bar.update(len(batch))
                bar.set_postfix(hr_mpix_s=f"{hr_pixels / 1e6 / max(time.time() - started, 1e-9):.2f}")
            finished = [f for f in pending if f.done()]
            for f in finished:  # surface write errors early and let finished writes go
                f.result()
            pending = [f for f in pending if f not in finished]
        for f in pending:
            f.result()
    bar.close()
    seconds = time.time() - started
    rate = len(todo) / max(seconds, 1e-9)
    speed = f"{rate:.1f} images/s" if rate >= 1 else f"{seconds / max(len(todo), 1):.1f} s an image"
    print(f"wrote {len(todo) - len(failed)} PNGs to {out_dir} in {seconds:.1f}s" + (f" ({speed})" if todo else ""))
    if not config.val_of:
        paths.record_last_prediction(out_dir, identity.get("weights", identity.get("model", "")))
    if failed:
        raise JobFailed(f"{len(failed)} input(s) not predicted (unreadable, or the model's output not finite): "
                        f"{', '.join(p.name for p in failed[:5])}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
