"""The naive baseline of bench_predict.py: the loop anyone writes first, kept independent
of srx4's prediction code (only the model is built from the repo's weights).

One image at a time, fp32, NCHW, BatchNorm as trained, PIL to read and write (PNG
compression level 6, PIL's default).

In:  --weights best.safetensors, --input a folder of LR PNGs.  Out: --output/NAME.png.

    python benchmarks/naive_predict.py --weights weights/srresnet-x4/best.safetensors --input lr --output sr
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from srx4.models.weights import load_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    model = load_model(args.weights)[0].eval()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        for path in sorted(Path(args.input).glob("*.png")):
            lr = np.asarray(Image.open(path).convert("RGB"))                          # (H, W, 3) uint8
            x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255             # (1, 3, H, W)
            sr = model(x)[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0)     # (sH, sW, 3)
            Image.fromarray(sr.numpy()).save(out / path.name)


if __name__ == "__main__":
    main()
