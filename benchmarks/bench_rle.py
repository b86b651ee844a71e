"""Speed of SRGB's rle cell (srx4/submit/rle.py): the numpy run-length encoder against
a plain Python loop over the bytes (the baseline, measured in the same run), and the
whole cell (run pairs + zlib level 9 + base64) beside zlib alone, on real images.

In:  a 256x256 crop and a whole 1080p frame: a GNR638 HR frame from ../shared when
     present, else a Set14 photo tiled to 1080p.
Out: one line per size: ms per image for each step and the numpy/loop ratio.

    python benchmarks/bench_rle.py
    python benchmarks/bench_rle.py --repeats 20
"""
import argparse
import sys
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from srx4.image.codec import read_image  # noqa: E402
from srx4.submit.rle import encode_rle, run_pairs  # noqa: E402


def loop_pairs(flat: bytes) -> bytes:
    """The baseline: one Python step per byte."""
    out = bytearray()
    value, count = flat[0], 0
    for b in flat:
        if b == value and count < 255:
            count += 1
        else:
            out += bytes((value, count))
            value, count = b, 1
    out += bytes((value, count))
    return bytes(out)


def timed(fn, repeats):
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    frame = REPO.parent / "shared/samples/gnr638/hr/00029.png"
    if frame.is_file():
        hr, source = read_image(frame), frame.name
    else:
        photo = read_image(REPO / "benchmarks/Set14/HR/comic.png")
        hr, source = np.tile(photo, (5, 8, 1))[:1080, :1920].copy(), "Set14 comic tiled"
    for name, img in (("256x256", hr[:256, :256].copy()), ("1920x1080", hr)):
        bgr = np.ascontiguousarray(img[:, :, ::-1])
        assert loop_pairs(bgr.tobytes()) == run_pairs(bgr)
        fast = timed(lambda: run_pairs(bgr), args.repeats)
        slow = timed(lambda: loop_pairs(bgr.tobytes()), max(1, args.repeats // 5))
        pairs = run_pairs(bgr)
        z9 = timed(lambda: zlib.compress(pairs, 9), max(1, args.repeats // 5))
        cell = timed(lambda: encode_rle(img), max(1, args.repeats // 5))
        print(f"{name} ({source}): run pairs numpy {fast:.2f} ms vs Python loop {slow:.1f} ms = {slow / fast:.0f}x; "
              f"zlib level 9 {z9:.1f} ms; whole cell {cell:.1f} ms ({len(pairs) / bgr.size:.2f} pair bytes a byte)")


if __name__ == "__main__":
    main()
