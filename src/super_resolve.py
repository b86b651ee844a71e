"""Super-resolve single images: photo.png -> submissions/super_resolve/photo_x4.png (or in
--output). Never beside the image by default: a test LR folder would take the outputs for
test images at the next predict.py.

In:  --weights (run folders, files or shipped names, predict.py's rule: default the run
     train.py finished last, else the shipped weights/srresnet-x4) and one or more images.
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
from srx4.core.cli import option, parse_config, run_main
from srx4.core.progress import progress
from srx4.core.system import resolve_device
from srx4.image.codec import ImageError, read_image, to_tensor, to_uint8, write_png
from srx4.image.metrics import psnr_uint8
from srx4.image.resize import resize_tensor
from srx4.predict.choose import WEIGHTS_HELP, load_predictor
from srx4.predict.folder import Options, predict_images
from srx4.runs.plots import labelled_strip


@dataclass
class SuperResolveConfig:
    images: list = option([], "image files to super-resolve")
    weights: list = option([], WEIGHTS_HELP)
    output: str = option("", "output folder (default: submissions/super_resolve)")
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
    """(labelled bicubic | SR (| HR) at the output size, {panel: PSNR} when HR is known);
    lr and sr (and hr) uint8 (H, W, 3)."""
    bicubic = to_uint8(resize_tensor(to_tensor(lr)[None].double(), scale)[0].float())
    panels = [("bicubic", bicubic), ("SR", sr)]
    if hr is not None and hr.shape[:2] != sr.shape[:2]:
        raise ImageError(f"HR is {hr.shape[1]}x{hr.shape[0]}, the output {sr.shape[1]}x{sr.shape[0]}")
    labelled = [(label, image, None if hr is None else psnr_uint8(image, hr)) for label, image in panels]
    strip = labelled_strip(labelled + ([("HR", hr, None)] if hr is not None else []), gap=8)
    return strip, {label: value for label, _, value in labelled if value is not None}


def main(argv=None):
    config = parse_config(SuperResolveConfig, "Super-resolve single images.", argv, positional="images")
    device = resolve_device(config.device)
    model = load_predictor(config.weights, device).inference_form()
    options, failed = Options(tta=config.tta, quiet=config.quiet), 0
    for image_path in progress(list(map(Path, config.images)), desc="super-resolve", unit="img",
                               quiet=config.quiet):
        try:
            lr = read_image(image_path)                                        # (H, W, 3) uint8
        except ImageError as err:
            print(f"skipped: {err}", file=sys.stderr)
            failed += 1
            continue
        sr = predict_images(model, [lr], options, device, [image_path.name])[0]    # (sH, sW, 3) uint8
        if sr is None:
            failed += 1
            continue
        folder = Path(config.output) if config.output else paths.submissions_dir() / "super_resolve"
        out = folder / f"{image_path.stem}_x{model.scale}.png"
        write_png(out, sr)
        print(f"wrote {out} ({sr.shape[1]}x{sr.shape[0]})")
        if config.compare:
            try:
                compare, figures = comparison(lr, sr, model.scale, ground_truth(config.hr, image_path))
            except ImageError as err:
                print(f"no comparison for {image_path}: {err}", file=sys.stderr)
                failed += 1
                continue
            write_png(folder / f"{image_path.stem}_x{model.scale}_compare.png", compare)
            print(f"wrote {folder / f'{image_path.stem}_x{model.scale}_compare.png'} (bicubic | SR"
                  + (" | HR)" if figures else ")"))
            if figures:
                ours, base = figures["SR"], figures["bicubic"]
                print(f"{image_path.name}: PSNR {ours:.3f} dB vs bicubic {base:.3f} dB ({ours - base:+.3f} dB, RGB)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
