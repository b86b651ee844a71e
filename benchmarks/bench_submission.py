"""Submission CSV writing: make_submission.py's path vs the naive loop.

Frames: N copies of the real GNR638 1920x1080 frames (PNG) with their LR.
Naive (the GNR638 write-up): cv2.imread + cv2.imencode per frame in a loop,
every base64 row in a pandas DataFrame, then to_csv. make_submission.py: the
PNG bytes as they are, checked by decoding on all cores, rows streamed to disk.
Each runs in its own process; prints time and how far that process's peak
Python/numpy memory grew during the work (tracemalloc; imports excluded).
With --weights, also times the whole user path on the device at hand:
predict.py on the LR frames, then make_submission.py (subprocesses).

    python benchmarks/bench_submission.py --frames 100
    python benchmarks/bench_submission.py --frames 500 --weights logs/run   # on a GPU machine
"""
import argparse
import base64
import multiprocessing as mp
import tracemalloc
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, machine, sample_dir


def peak_mb():
    """Peak Python-heap and numpy memory since tracing began (tracemalloc), in MB."""
    if not tracemalloc.is_tracing():
        tracemalloc.start()
        return 0.0
    return tracemalloc.get_traced_memory()[1] / 1e6


def naive(png_dir, lr_dir, out_csv, queue):
    import cv2
    import pandas as pd
    base = peak_mb()
    start = time.perf_counter()
    rows = []
    for path in sorted(Path(png_dir).glob("*.png")):
        img = cv2.imread(str(path))
        ok, buf = cv2.imencode(".png", img)
        rows.append({"id": path.name, "Encoded_Image": base64.b64encode(buf.tobytes()).decode()})
    pd.DataFrame(rows).to_csv(out_csv, index=False)
    queue.put((time.perf_counter() - start, peak_mb() - base))


def streamed(png_dir, lr_dir, out_csv, queue):
    from srx4.submit.submission import write_submission
    base = peak_mb()
    start = time.perf_counter()
    write_submission(png_dir, lr_dir, out_csv)
    queue.put((time.perf_counter() - start, peak_mb() - base))


def measure(target, *args):
    queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", default="")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--weights", default="", help="also time predict.py + make_submission.py with these weights")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    src = sample_dir(args.samples)
    tmp = Path(tempfile.mkdtemp())
    names = sorted(p.name for p in (src / "hr").glob("*.png"))
    for side in ("hr", "lr"):
        (tmp / side).mkdir()
        for k in range(args.frames):
            name = names[k % len(names)]
            shutil.copy(src / side / name, tmp / side / f"{k:05d}.png")
    print(f"machine: {machine()}; {args.frames} frames 1920x1080")
    if not args.skip_naive:
        t_naive, m_naive = measure(naive, str(tmp / "hr"), str(tmp / "lr"), str(tmp / "naive.csv"))
        print(f"naive loop + pandas   : {t_naive:7.1f}s, memory growth {m_naive:7.0f} MB")
    t_fast, m_fast = measure(streamed, str(tmp / "hr"), str(tmp / "lr"), str(tmp / "fast.csv"))
    print(f"make_submission path  : {t_fast:7.1f}s, memory growth {m_fast:7.0f} MB, "
          f"CSV {(tmp / 'fast.csv').stat().st_size / 1e9:.2f} GB")
    if not args.skip_naive:
        print(f"speed-up: {t_naive / t_fast:.2f}x; memory {m_naive / m_fast:.1f}x less")
    if args.weights:
        start = time.perf_counter()
        for cmd in (["predict.py", "--weights", args.weights, "--input", tmp / "lr", "--output", tmp / "pred"],
                    ["make_submission.py", "--input", tmp / "pred", "--lr-dir", tmp / "lr", "--output", tmp / "e2e.csv"]):
            subprocess.run([sys.executable, str(REPO / "src" / cmd[0]), *map(str, cmd[1:])], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            print(f"  {cmd[0]} done at {time.perf_counter() - start:.1f}s")
        print(f"LR PNGs -> validated CSV (predict + make_submission): {time.perf_counter() - start:.1f}s "
              f"for {args.frames} frames")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
