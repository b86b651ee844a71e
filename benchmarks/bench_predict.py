"""predict.py as a whole process against a naive loop (benchmarks/naive_predict.py), on
the same LR folder, with where predict.py's time goes.

The inputs: --images BSD200 photos (../shared/train/BSD200, else scikit-image's
photos cropped) made LR by MATLAB's bicubic /4: about 120 x 80 each, the size of
BSD100's LR. Each variant runs as its own process (start-up, imports, model load,
decode, forward passes, PNG encode: what a user waits for), --repeats times,
interleaved so a slow minute of the machine hits every variant alike. Per variant:
the median wall time, its spread ((max - min) / median; stable when under 10%), the
ratio to the naive loop's median, and the PSNR of its outputs against the HR.

Variants: predict.py as it runs by default here; with SRX4_CPU_BF16=0 (the fp32 path a
CPU without bf16 takes); --backend openvino and onnxruntime where installed.
Then one in-process profile of predict.py's steps on the same images.

    python benchmarks/bench_predict.py                           # 100 images, 3 repeats
    python benchmarks/bench_predict.py --images 40 --repeats 5 --weights logs/run
"""
import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import REPO, machine

SHARED_PHOTOS = REPO.parent / "shared" / "train" / "BSD200"


def make_inputs(folder: Path, count: int):
    """count LR PNGs (about 120 x 80) in folder/lr and their HR in folder/hr."""
    from srx4.image.codec import list_images, read_image, write_png
    from srx4.image.resize import imresize, modcrop
    if SHARED_PHOTOS.is_dir():
        sources = [read_image(p) for p in list_images(SHARED_PHOTOS)[:count]]
    else:
        from skimage import data
        photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
        sources = [photos[k % 4][(k * 7) % 40:][:320, :480] for k in range(count)]   # shifted crops, ~480x320
    for k, hr in enumerate(sources[:count]):
        hr = modcrop(hr, 4)
        write_png(folder / "hr" / f"{k:04d}.png", hr)
        write_png(folder / "lr" / f"{k:04d}.png", imresize(hr, 0.25))
    return len(sources[:count])


def mean_psnr(out_dir: Path, hr_dir: Path) -> float:
    from srx4.image.codec import list_images, read_image
    from srx4.image.metrics import psnr_uint8
    return float(np.mean([psnr_uint8(read_image(p), read_image(hr_dir / p.name)) for p in list_images(out_dir)]))


def variants(weights: str, lr: Path):
    """{label: (command, extra env)}."""
    python = sys.executable
    predict = [python, str(REPO / "src" / "predict.py"), "--weights", weights, "--input", str(lr), "--quiet"]
    found = {"naive loop (fp32, one image at a time)":
             ([python, str(REPO / "benchmarks" / "naive_predict.py"), "--weights", weights, "--input", str(lr)], {}),
             "predict.py (default here)": (predict + ["--backend", "torch"], {}),
             "predict.py, fp32 path (SRX4_CPU_BF16=0)": (predict + ["--backend", "torch"], {"SRX4_CPU_BF16": "0"})}
    if importlib.util.find_spec("openvino"):
        found["predict.py --backend openvino"] = (predict + ["--backend", "openvino"], {})
        found["predict.py --backend openvino, fp32 (SRX4_CPU_BF16=0)"] = (predict + ["--backend", "openvino"],
                                                                         {"SRX4_CPU_BF16": "0"})
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        found["predict.py --backend onnxruntime"] = (predict + ["--backend", "onnxruntime"], {})
    return found


def profile(weights: str, lr: Path, out: Path) -> dict:
    """Seconds of each step of predict.py's path, in this process, serially."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, srx4.predict.folder, srx4.predict.choose"], check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    steps = {"python start-up + imports (a process of its own)": time.perf_counter() - started}
    import torch
    from srx4.image.codec import list_images, read_image, write_png
    from srx4.predict.choose import load_predictor
    from srx4.predict.folder import Options, batches_by_size, predict_images
    from srx4.predict.inference import auto_batch
    device = torch.device("cpu")

    def step(name, fn):
        start = time.perf_counter()
        result = fn()
        steps[name] = time.perf_counter() - start
        return result

    model = step("model load + BatchNorm folding", lambda: load_predictor([weights], device, "torch").inference_form())
    paths = list_images(lr)
    images = step("decode the LR PNGs", lambda: [(p, read_image(p)) for p in paths])
    options = Options(quiet=True)

    def forward():
        outputs = []
        for batch in batches_by_size(images, lambda h, w: auto_batch(model.spec, h, w, device)):
            outputs += zip([p for p, _ in batch], predict_images(model, [i for _, i in batch], options, device))
        return outputs
    outputs = step("forward passes (+ uint8)", forward)
    step("encode the SR PNGs (level 1)", lambda: [write_png(out / f"{p.stem}.png", sr, 1) for p, sr in outputs])
    return steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=str(REPO / "weights" / "srresnet-x4"))
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from srx4.core.system import cpu_has_bf16
    from srx4.models.weights import resolve_weights
    weights = str(resolve_weights(args.weights))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        count = make_inputs(tmp, args.images)
        runs = variants(weights, tmp / "lr")
        times = {label: [] for label in runs}
        for repeat in range(args.repeats):
            for k, (label, (command, env)) in enumerate(runs.items()):
                out = tmp / f"out{k}_{repeat}"
                start = time.perf_counter()
                subprocess.run(command + ["--output", str(out)], check=True, capture_output=True,
                               env={**os.environ, **env})
                times[label].append(time.perf_counter() - start)
        psnrs = {label: mean_psnr(tmp / f"out{k}_0", tmp / "hr") for k, label in enumerate(runs)}
        steps = profile(weights, tmp / "lr", tmp / "profiled")
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    cpu = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "?")
    print(f"machine: {machine()}; CPU {cpu}; bf16 instructions: {cpu_has_bf16()}; "
          f"{count} LR images about 120x80 -> x4; weights {args.weights}; {args.repeats} repeats, interleaved")
    naive = statistics.median(times[next(iter(runs))])
    for label, seconds in times.items():
        median = statistics.median(seconds)
        spread = (max(seconds) - min(seconds)) / median
        print(f"{label:58}: median {median:6.1f} s ({min(seconds):.1f}-{max(seconds):.1f}, spread {spread:4.0%}"
              f"{'' if spread <= 0.10 else ', NOT stable'}), {naive / median:4.2f}x the naive loop, "
              f"PSNR {psnrs[label]:.3f} dB")
    total = sum(steps.values())
    print(f"where predict.py's time goes (in-process, serial, default precision; {total:.1f} s in all):")
    for name, seconds in steps.items():
        print(f"  {name:50}: {seconds:6.2f} s ({seconds / total:4.0%})")


if __name__ == "__main__":
    main()
