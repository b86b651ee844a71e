"""Super-resolve single images: photo.png -> photo_x4.png beside it (or in --output).

In:  --weights FILE_OR_RUN_DIR (default: the newest run) and one or more images.
Out: NAME_x<scale>.png; with --compare also NAME_x<scale>_compare.png, a
     side-by-side figure of bicubic | SR at the output size.

    python src/super_resolve.py --weights logs/demo photo.png --compare
"""
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from srx4 import paths
from srx4.checkpoint import WeightsError, load_model
from srx4.config import option, parse_config
from srx4.images import ImageError, read_image, to_tensor, to_uint8, write_png
from srx4.imresize import resize_tensor
from srx4.infer import resolve_device, super_resolve


@dataclass
class SuperResolveConfig:
    images: list = option([], "image files to super-resolve")
    weights: str = option("", "weights file or run folder (default: the run train.py finished last)")
    output: str = option("", "output folder (default: beside each image)")
    compare: bool = option(False, "also write a bicubic | SR side-by-side picture")
    tta: bool = option(False, "x8 self-ensemble")
    device: str = option("auto", "auto, cpu or cuda")


def main(argv=None):
    config = parse_config(SuperResolveConfig, "Super-resolve single images.", argv, positional="images")
    device = resolve_device(config.device)
    failed = 0
    try:
        weights = config.weights or paths.last_run()
        if not weights:
            raise WeightsError("no trained weights found: pass --weights or run python src/train.py first")
        model, _ = load_model(weights, device=device)
    except WeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for image_path in map(Path, config.images):
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
            bicubic = resize_tensor(lr, model.scale)[0]
            gap = torch.ones(3, sr.shape[1], 8, device=device)
            write_png(folder / f"{image_path.stem}_x{model.scale}_compare.png",
                      to_uint8(torch.cat([bicubic, gap, sr.float()], dim=2)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
