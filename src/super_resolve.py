"""Super-resolve single images: photo.png -> photo_x4.png beside it (or in --output).

In:  --weights FILE_OR_RUN_DIR or a shipped name (default: the newest run, else the
     shipped recommended weights, weights/srresnet-x4) and one or more images.
Out: NAME_x<scale>.png; with --compare also NAME_x<scale>_compare.png, a
     labelled side-by-side figure of bicubic | SR at the output size, with
     | HR and each panel's PSNR when --hr names the ground truth (a file, or a
     folder holding one of the same name).

    python src/super_resolve.py --weights logs/demo photo.png --compare
    python src/super_resolve.py --weights logs/demo data/test/lr/a.png --compare --hr data/test/hr
"""
import sys
from dataclasses import dataclass
from pathlib import Path


from srx4.core import paths
from srx4.models.weights import WeightsError
from srx4.predict.onnx import load_runnable
from srx4.core.cli import option, parse_config, run_main
from srx4.image.metrics import psnr_uint8
from srx4.image.codec import ImageError, read_image, to_tensor, to_uint8, write_png
from srx4.image.resize import resize_tensor
from srx4.core.system import resolve_device
from srx4.predict.inference import super_resolve
from srx4.runs.plots import labelled_strip
from srx4.core.progress import progress


@dataclass
class SuperResolveConfig:
    images: list = option([], "image files to super-resolve")
    weights: str = option("", "weights file or run folder (default: the run train.py finished last)")
    output: str = option("", "output folder (default: beside each image)")
    compare: bool = option(False, "also write a labelled bicubic | SR side-by-side picture")
    hr: str = option("", "with --compare: the ground truth (file, or folder with the same name) for | HR and PSNRs")
    tta: bool = option(False, "x8 self-ensemble")
    device: str = option("auto", "auto, cpu or cuda")
    quiet: bool = option(False, "no progress bars or progress lines")


def ground_truth(hr: str, image_path: Path):
    """uint8 HR for image_path from --hr (a file, or a folder with the same name), or None."""
    if not hr:
        return None
    path = Path(hr) / image_path.name if Path(hr).is_dir() else Path(hr)
    return read_image(path)


def comparison(lr, sr, scale: int, hr=None):
    """(labelled bicubic | SR (| HR) at the output size, {panel: PSNR} when HR is known)."""
    panels = [("bicubic", to_uint8(resize_tensor(lr[None].double(), scale)[0].float())), ("SR", to_uint8(sr))]
    if hr is not None and hr.shape[:2] != panels[1][1].shape[:2]:
        raise ImageError(f"HR is {hr.shape[1]}x{hr.shape[0]}, the output {sr.shape[2]}x{sr.shape[1]}")
    labelled = [(label, image, None if hr is None else psnr_uint8(image, hr)) for label, image in panels]
    strip = labelled_strip(labelled + ([("HR", hr, None)] if hr is not None else []), gap=8)
    return strip, {label: value for label, _, value in labelled if value is not None}


def main(argv=None):
    config = parse_config(SuperResolveConfig, "Super-resolve single images.", argv, positional="images")
    device = resolve_device(config.device)
    failed = 0
    weights = config.weights or paths.last_run()
    if not config.weights and weights:
        shipped = paths.recommended_weights()
        print(f"using your last run {weights} (logs/{paths.LAST_RUN})"
              + (f"; --weights {shipped.name} for the shipped weights" if shipped else ""))
    if not weights and paths.recommended_weights():
        weights = paths.recommended_weights()
        print(f"no run of yours found: using the shipped weights {weights.name} ({weights / 'CARD.md'})")
    if not weights:
        raise WeightsError("no trained weights found: pass --weights or run python src/train.py first")
    model, _ = load_runnable(weights, device)
    for image_path in progress(list(map(Path, config.images)), desc="super-resolve", unit="img"):
        try:
            lr = to_tensor(read_image(image_path))[None].to(device)            # (1, 3, H, W) in [0, 1]
        except ImageError as err:
            print(f"skipped: {err}", file=sys.stderr)
            failed += 1
            continue
        sr = super_resolve(model, lr, tta=config.tta)[0]                      # (3, sH, sW)
        folder = Path(config.output) if config.output else image_path.parent
        out = folder / f"{image_path.stem}_x{model.scale}.png"
        write_png(out, to_uint8(sr))
        print(f"wrote {out} ({sr.shape[2]}x{sr.shape[1]})")
        if config.compare:
            try:
                compare, figures = comparison(lr[0], sr, model.scale, ground_truth(config.hr, image_path))
            except ImageError as err:
                print(f"no comparison for {image_path}: {err}", file=sys.stderr)
                failed += 1
                continue
            write_png(folder / f"{image_path.stem}_x{model.scale}_compare.png", compare)
            if figures:
                ours, base = figures["SR"], figures["bicubic"]
                print(f"{image_path.name}: PSNR {ours:.3f} dB vs bicubic {base:.3f} dB ({ours - base:+.3f} dB, RGB)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
