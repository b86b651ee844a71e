"""Super-resolve every test LR image to a PNG, with the best weights of a run.

In:  --weights logs/<run>/ or a .safetensors / .onnx file or a shipped name; several: an
     ensemble (srx4/predict/choose.py; default: the run train.py finished last, recorded in
     logs/last_run.json, else the shipped weights/srresnet-x4),
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
input is named and the exit status is 1. The work is srx4/predict/folder.py's.
"""
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from srx4.core import layout, paths
from srx4.core.cli import CHANNELS_LAST_HELP, option, parse_config, run_main
from srx4.core.errors import JobFailed, MissingData
from srx4.core.precision import AMP_DTYPES, NAMES, device_name, for_inference
from srx4.core.system import resolve_device
from srx4.image.codec import list_images
from srx4.models import Bicubic
from srx4.predict.choose import WEIGHTS_HELP, Predictor, load_predictor
from srx4.predict.folder import Options, predict_folder


@dataclass
class PredictConfig:
    weights: list = option([], WEIGHTS_HELP)
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
    amp: bool = option(True, "mixed precision: on CUDA the GPU's dtype, on a CPU bf16 where it is native; "
                             "--no-amp: fp32")
    amp_dtype: str = option("auto", "autocast dtype on CUDA: auto (bf16 from compute capability 8.0, "
                                    "else fp16: a T4 is 7.5), bf16 or fp16", choices=AMP_DTYPES)
    fold_bn: bool = option(True, "fold BatchNorm into the convolutions (same outputs, faster)")
    channels_last: bool = option(True, CHANNELS_LAST_HELP)
    backend: str = option("auto", "torch; onnxruntime (exports the weights to ONNX first) or openvino (CPU), both "
                                  "from requirements-extras.txt; auto = onnxruntime for a .onnx file, else torch",
                          choices=["auto", "torch", "onnxruntime", "openvino"])
    quiet: bool = option(False, "no progress bars or progress lines")


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


def main(argv=None):
    config = parse_config(PredictConfig, "Super-resolve test LR images to PNGs.", argv)
    device = resolve_device(config.device)
    if config.model == "bicubic":
        predictor = Predictor(Bicubic(config.scale).to(device), {"model": "bicubic", "scale": config.scale},
                              "bicubic", [])
    else:
        predictor = load_predictor(config.weights, device, config.backend)
    model = predictor.inference_form(config.fold_bn, config.channels_last)
    if config.val_of:
        lr_dir, names = validation_inputs(Path(config.val_of))
        inputs, folder = [lr_dir / n for n in names], "val_png"
    else:
        lr_dir, folder = Path(config.input) if config.input else paths.default_test_dir(), "png"
    if not lr_dir.is_dir():
        raise MissingData(f"{lr_dir}: input folder not found")
    inputs = inputs if config.val_of else list_images(lr_dir)
    out_dir = Path(config.output) if config.output else paths.submissions_dir() / predictor.name / folder
    dtype = for_inference(device, config.amp, config.amp_dtype, model.spec)
    print(f"precision: {NAMES.get(dtype, 'fp32')} on {device_name(device)}" + ("" if config.amp else " (--no-amp)"))
    result = predict_folder(model, predictor.identity, inputs, out_dir, lr_dir, Options.of(config), device)
    print(f"wrote {result.written} PNGs to {out_dir} in {result.seconds:.1f}s"
          + (f" ({result.speed()})" if result.written or result.failed else ""))
    if not config.val_of:
        paths.record_last_prediction(out_dir, predictor.identity.get("weights", predictor.identity.get("model", "")))
    if result.failed:
        raise JobFailed(f"{len(result.failed)} input(s) not predicted (unreadable, or the model's output not finite): "
                        f"{', '.join(p.name for p in result.failed[:5])}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
