"""Export trained weights to ONNX and check the export against the torch model.

In:  --weights a run folder or .safetensors (default: the run train.py finished last);
     --check-on benchmark folders of LR images (default: the shipped Set5 and Set14
     LR_x4; 'none' to skip).
Out: --onnx FILE (default logs/<run>/model.onnx, or model.onnx here when that folder
     is read-only): the inference form (BatchNorm folded), output clamped; in `lr`,
     out `sr`, float32 RGB NCHW in [0, 1], batch/height/width dynamic; the model
     config inside as metadata. Then every check image is run through ONNX Runtime
     and torch (CPU, fp32) and their PNG values compared: more than 1 grey level
     apart anywhere and the file is removed (exit 1).

    python src/export.py --weights logs/a --onnx model.onnx
    python src/predict.py --weights model.onnx         # predict with ONNX Runtime
"""
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from srx4.core import paths
from srx4.core.errors import MissingData
from srx4.models.weights import WeightsError, load_model, resolve_weights
from srx4.core.cli import option, parse_config, run_main
from srx4.image.codec import ImageError, list_images, read_image, to_tensor, to_uint8
from srx4.predict.inference import prepare_model, super_resolve
from srx4.predict.onnx import OPSET, ExportError, OnnxModel, export_onnx, grey_level_differences
from srx4.core.progress import progress

CHECK_SETS = [paths.REPO / "benchmarks" / name / "LR_x4" for name in ("Set5", "Set14")]


@dataclass
class ExportConfig:
    weights: str = option("", "run folder or .safetensors (default: the run train.py finished last)")
    onnx: str = option("", "ONNX file to write (default: logs/<run>/model.onnx)")
    opset: int = option(OPSET, "ONNX opset")
    check_on: list = option([], "folders of LR images to compare ONNX Runtime with torch on (default: the "
                                "shipped Set5 and Set14 LR; 'none' = no check)")
    quiet: bool = option(False, "no progress bar")


def check_export(model, exported: OnnxModel, folders, quiet: bool) -> dict:
    """Both models on every image of `folders` (whole images, fp32, CPU): the worst and
    the overall figures of their PNG-value differences."""
    files = [p for folder in folders for p in list_images(folder)]
    worst, equal, within, values, unreadable = 0, 0.0, 0.0, 0, []
    for path in progress(files, desc="check", unit="img", quiet=quiet):
        try:
            lr = to_tensor(read_image(path))[None]                            # (1, 3, H, W)
        except ImageError:
            unreadable.append(path.name)
            continue
        a = to_uint8(super_resolve(model, lr, tile=0, amp=False)[0])
        b = to_uint8(super_resolve(exported, lr, tile=0, amp=False)[0])
        d = grey_level_differences(a, b)
        worst, n = max(worst, d["max"]), a.size
        equal, within, values = equal + d["share_equal"] * n, within + d["share_within_1"] * n, values + n
    return {"images": len(files) - len(unreadable), "unreadable": unreadable, "max": worst, "share_equal": equal / max(values, 1),
            "share_within_1": within / max(values, 1)}


def default_output(weights: Path) -> Path:
    folder = weights.parent
    return folder / "model.onnx" if not paths.read_only(folder) else Path("model.onnx")


def main(argv=None):
    config = parse_config(ExportConfig, "Export weights to ONNX, checked against torch.", argv)
    weights = config.weights or paths.last_run()
    if not weights:
        raise WeightsError("no trained weights found: pass --weights or run python src/train.py first")
    weights = resolve_weights(weights)
    model, model_config = load_model(weights)
    fast = prepare_model(model, fold_bn=True, channels_last=False)
    out = Path(config.onnx) if config.onnx else default_output(weights)
    export_onnx(fast, model_config, out, config.opset)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, opset {config.opset}) from {weights}")
    if config.check_on == ["none"]:
        print("not checked against torch (--check-on none)")
        return 0
    exported = OnnxModel(out)
    folders = [Path(f) for f in config.check_on] or CHECK_SETS
    for folder in folders:
        if not folder.is_dir():
            raise MissingData(f"{folder}: no such folder of check images")
    with torch.inference_mode():
        result = check_export(fast, exported, folders, config.quiet)
    if result["unreadable"]:
        print(f"check images left out (unreadable): {', '.join(result['unreadable'])}")
    if not result["images"]:
        raise ExportError(f"no readable check images in {', '.join(map(str, folders))}: {out} is not verified")
    summary = (f"{result['images']} images, ONNX Runtime vs torch: max {result['max']} grey level(s), "
               f"{100 * result['share_equal']:.3f}% of values equal, {100 * result['share_within_1']:.4f}% within 1")
    if result["max"] > 1:
        out.unlink()
        raise ExportError(f"the export differs from torch ({summary}): {out} removed")
    print(f"checked on {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
