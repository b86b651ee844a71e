"""Images per second for many small test crops (SRGB's 64x64 LR test set) with the
batches predict.py now forms by size (`auto_batch`), against one image per forward
pass (the baseline, measured in the same run), same model, same outputs.

In:  --images 64x64 LR crops cut from the Set14 photos shipped in benchmarks/ (5,000 by
     default), a model built with seeded weights (--model, its full size), --device.
     Each path runs for at most --seconds; its rate is images done / time taken, so a
     CPU measures a share of the 5,000 in bounded time (said in the output).
Out: one line: images/s one at a time, images/s batched, the ratio, the batch size,
     and the largest grey-level difference between the two paths' outputs.

    python benchmarks/bench_small_crops.py                       # CPU, SRResNet-16
    python benchmarks/bench_small_crops.py --device cuda --tta   # on a GPU (gpu_check runs this too)
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from srx4.core.system import resolve_device  # noqa: E402
from srx4.image.codec import list_images, read_image, to_uint8_batch  # noqa: E402
from srx4.models import ARCHS, build_model  # noqa: E402
from srx4.predict.inference import auto_batch, prepare_model, super_resolve  # noqa: E402


def crops(count: int, side: int = 64) -> np.ndarray:
    """(count, side, side, 3) uint8 crops of the Set14 photos, on a grid, repeated as needed."""
    tiles = []
    for path in list_images(REPO / "benchmarks/Set14/LR_x4"):
        img = read_image(path)
        for y in range(0, img.shape[0] - side + 1, side // 2):
            for x in range(0, img.shape[1] - side + 1, side // 2):
                tiles.append(img[y:y + side, x:x + side])
    return np.stack([tiles[k % len(tiles)] for k in range(count)])


def run(model, images, batch, device, tta, seconds):
    """(images done, seconds, uint8 outputs) predicting `images` `batch` at a time for at most `seconds`."""
    outputs, start, done = [], time.perf_counter(), 0
    while done < len(images) and time.perf_counter() - start < seconds:
        x = torch.from_numpy(images[done:done + batch]).to(device).permute(0, 3, 1, 2).float() / 255
        outputs.append(to_uint8_batch(super_resolve(model, x, tile=0, tta=tta)))
        done += x.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return done, time.perf_counter() - start, np.concatenate(outputs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--model", default="srresnet", choices=sorted(ARCHS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--seconds", type=float, default=60.0, help="time cap for each path")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = build_model({"name": args.model, "scale": 4})
    for p in model.parameters():          # seeded weights, not the zero tail that starts at bicubic
        if p.dim() == 4 and not p.abs().sum():
            torch.nn.init.normal_(p, std=0.01)
    model = prepare_model(model.to(device).eval())
    images = crops(args.images)
    batch = auto_batch(model.spec, 64, 64, device)
    run(model, images[:batch], batch, device, args.tta, 5)                       # warm-up
    one_n, one_s, one_out = run(model, images, 1, device, args.tta, args.seconds)
    many_n, many_s, many_out = run(model, images, batch, device, args.tta, args.seconds)
    shared = min(one_n, many_n)
    diff = np.abs(one_out[:shared].astype(int) - many_out[:shared].astype(int)).max()
    cpu = " ".join(open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].split()[1:]) \
        if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"{args.model} x4, 64x64 crops{' with x8 TTA' if args.tta else ''}, {device.type} ({cpu}, "
          f"{torch.get_num_threads()} threads): one at a time {one_n / one_s:.1f} images/s ({one_n} of "
          f"{len(images)} in {one_s:.0f} s); batched by size ({batch} a pass) {many_n / many_s:.1f} images/s "
          f"({many_n} in {many_s:.0f} s): {(many_n / many_s) / (one_n / one_s):.2f}x; max difference {diff} grey "
          f"level(s) over {shared} images")


if __name__ == "__main__":
    main()
