"""The full-scale rehearsal: a GNR638-shaped competition through the real train.py
under torchrun (two ranks), a SIGKILL and a resume, then predict + make_submission.

In:  the two real GNR638 pairs in ../shared/samples/gnr638 and the photos in
     ../shared/train (T91, BSD200): numbered sequences of RGBA frames, 480x270 ->
     1920x1080, made from them by crops, shifts, flips and brightness, so frames
     differ and neighbours are near-duplicates, as in a game video.
Out: printed figures (and --json FILE): time to the first training step, peak
     RSS per rank, peak cache disk and what is left after the kill and after exit,
     train vs validation seconds per epoch (projected from measured per-step and
     per-image times; every projection says so), test -> CSV time.

    python benchmarks/bench_full_scale.py                     # 4,500 pairs, 500 test frames (~60 GB disk)
    python benchmarks/bench_full_scale.py --pairs 300 --test-frames 50 --train-minutes 1
    python benchmarks/bench_full_scale.py --work /big/disk --keep   # keep the fabricated set for a rerun

On a CUDA machine (one process, a 15 GiB cap as a T4 stand-in):
    python benchmarks/bench_full_scale.py --device cuda --nproc 1 --amp-dtype fp16 --memory-cap-gb 15

--layout srgb fabricates a "Super Resolution in Video Games"-shaped competition instead:
RGB 270x480 -> 1080x1920 train pairs, a folder of 64x64 LR test crops and a sample
submission `id,filename,rle` with bytes-literal cells; training is held to RAM and disk
budgets a fifth of the decoded set (--budget-fraction), so it streams (two ranks, a
SIGKILL, a resume), and every test crop is predicted and written to the rle CSV:
    python benchmarks/bench_full_scale.py --layout srgb --pairs 300 --test-frames 2000 --train-minutes 2
"""
import argparse
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from common import REPO, free_port, machine

SHARED = REPO.parent / "shared"
HR_W, HR_H, SCALE = 1920, 1080, 4
FRAMES_PER_SEQUENCE = 100
SOURCES = []        # filled in each worker: (hr RGBA, lr RGBA) bases


def load_sources():
    """(HR, LR) RGBA bases: the real frames as they are, photos cropped to 16:9 and resized."""
    bases = []
    for name in ("00029", "00034"):
        hr = cv2.imread(str(SHARED / "samples/gnr638/hr" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        lr = cv2.imread(str(SHARED / "samples/gnr638/lr" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        bases.append((hr, lr))
    photos = sorted((SHARED / "train/BSD200").glob("*")) + sorted((SHARED / "train/T91").glob("*"))
    for path in photos[:40]:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        ch = min(h, w * 9 // 16)
        img = img[(h - ch) // 2:(h - ch) // 2 + ch, :ch * 16 // 9]
        hr = cv2.cvtColor(cv2.resize(img, (HR_W, HR_H), interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2BGRA)
        lr = cv2.resize(hr, (HR_W // SCALE, HR_H // SCALE), interpolation=cv2.INTER_AREA)
        bases.append((hr, lr))
    return bases


def frame(sequence: int, k: int):
    """Frame k of a sequence: its base panned by k LR pixels, flipped and lit per sequence."""
    if not SOURCES:
        SOURCES.extend(load_sources())
    hr, lr = SOURCES[sequence % len(SOURCES)]
    shift = (7 * sequence + k) % (HR_W // SCALE)
    lr = np.roll(lr, shift, axis=1)
    hr = np.roll(hr, SCALE * shift, axis=1)
    if sequence % 2:
        lr, hr = lr[:, ::-1], hr[:, ::-1]
    gain = 0.8 + 0.4 * ((sequence * 37) % 11) / 10 + 0.002 * k
    lr = cv2.convertScaleAbs(np.ascontiguousarray(lr), alpha=gain)
    hr = cv2.convertScaleAbs(np.ascontiguousarray(hr), alpha=gain)
    lr[..., 3] = hr[..., 3] = 255
    return hr, lr


def write_pair(job):
    out, name, sequence, k, with_hr, layout = job
    hr, lr = frame(sequence, k)
    if layout == "srgb":                  # RGB PNGs; the test side 64x64 LR crops of a frame
        hr, lr = hr[..., :3], lr[..., :3]
        if not with_hr:
            y, x = (37 * k) % (lr.shape[0] - 64), (53 * k + 11 * sequence) % (lr.shape[1] - 64)
            lr = lr[y:y + 64, x:x + 64]
    if with_hr:
        cv2.imwrite(str(out / "hr" / name), hr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    cv2.imwrite(str(out / "lr" / name), lr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return name


def fabricate(root: Path, pairs: int, test_frames: int, workers: int, layout: str = "gnr638"):
    """root/train/{lr,hr}, root/test/lr and root/sample_submission.csv, numbered frames
    (every 5th frame of a video, as GNR638's 00029, 00034, ...). Skips a complete set."""
    done = root / "fabricated.json"
    if done.is_file() and json.loads(done.read_text()) == {"pairs": pairs, "test": test_frames, "layout": layout}:
        return 0.0
    shutil.rmtree(root, ignore_errors=True)
    for d in ("train/lr", "train/hr", "test/lr"):
        (root / d).mkdir(parents=True)
    jobs = [(root / "train", f"{5 * i + 4:05d}.png", i // FRAMES_PER_SEQUENCE, i % FRAMES_PER_SEQUENCE, True,
             layout) for i in range(pairs)]
    jobs += [(root / "test", f"{5 * i + 2:05d}.png", 1000 + i // FRAMES_PER_SEQUENCE, i % FRAMES_PER_SEQUENCE, False,
              layout) for i in range(test_frames)]
    started = time.time()
    with ProcessPoolExecutor(workers) as pool:
        for count, _ in enumerate(pool.map(write_pair, jobs, chunksize=8), 1):
            if count % 500 == 0:
                print(f"  fabricated {count}/{len(jobs)} frames ({time.time() - started:.0f}s)", flush=True)
    ids = [Path(j[1]).stem for j in jobs if not j[4]]
    if layout == "srgb":     # SRGB's sample: an id, the test file's name, a bytes-literal rle cell
        (root / "sample_submission.csv").write_text("id,filename,rle\n" + "".join(
            f"{k},{i}.png,b'eJwDAAAAAAE='\n" for k, i in enumerate(ids)))
    else:
        (root / "sample_submission.csv").write_text("id,Encoded_Image\n" + "".join(f"{i},\n" for i in ids))
    done.write_text(json.dumps({"pairs": pairs, "test": test_frames, "layout": layout}))
    return time.time() - started


def du(path: Path) -> int:
    """Bytes really allocated under path (sparse files count what is written)."""
    total = 0
    for p in path.rglob("*") if path.is_dir() else []:
        try:
            total += p.stat().st_blocks * 512
        except FileNotFoundError:
            pass
    return total


class Watcher(threading.Thread):
    """Polls the training ranks' memory and the cache folder's disk use."""

    def __init__(self, cache_dir: Path):
        super().__init__(daemon=True)
        self.cache_dir, self.stop, self.peak_disk, self.ranks = cache_dir, False, 0, {}

    def run(self):
        while not self.stop:
            self.peak_disk = max(self.peak_disk, du(self.cache_dir))
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    env_rank = [e for e in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                                if e.startswith(b"RANK=")]
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                if not any(c.endswith(b"src/train.py") for c in cmd) or b"torch.distributed.run" in cmd:
                    continue                                    # not a training rank
                rank = env_rank[0].decode().split("=")[1] if env_rank else "0"
                fields = dict(re.findall(r"^(\w+):\s+(\d+) kB", status, re.M))
                peak = self.ranks.setdefault(rank, {"rss": 0, "anon": 0})
                peak["rss"] = max(peak["rss"], int(fields.get("VmRSS", 0)) * 1024)
                peak["anon"] = max(peak["anon"], int(fields.get("RssAnon", 0)) * 1024)
            time.sleep(0.5)


def log_times(train_log: Path):
    """Seconds to the first training step, as the run logged it (None before it is logged)."""
    text = train_log.read_text() if train_log.is_file() else ""
    first = re.search(r"first training step after ([\d.]+) s", text)
    return float(first.group(1)) if first else None


def launch(args, run_args, env):
    if args.nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.nproc}",
               f"--master_port={free_port()}"]
    else:
        cmd = [sys.executable]
    cmd += [str(REPO / "src/train.py"), *run_args]
    print("$", " ".join(cmd), flush=True)
    return subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)


def kill_tree(pid: int):
    """SIGKILL a process and every descendant (torchrun's ranks are not in its process group)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return tree


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=4500)
    parser.add_argument("--test-frames", type=int, default=500)
    parser.add_argument("--predict-frames", type=int, default=8, help="test frames really predicted (projected to all)")
    parser.add_argument("--train-minutes", type=float, default=2.0, help="training time of each of the two runs")
    parser.add_argument("--val-limit", type=int, default=4, help="validation images per epoch (projected to 100)")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp-dtype", default="auto")
    parser.add_argument("--memory-cap-gb", type=float, default=0, help="CUDA: cap this process's GPU memory")
    parser.add_argument("--work", default="", help="folder for the fabricated set (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the fabricated set")
    parser.add_argument("--json", default="", help="also write the figures here")
    parser.add_argument("--layout", default="gnr638", choices=["gnr638", "srgb"])
    parser.add_argument("--budget-fraction", type=float, default=0.2,
                        help="srgb: RAM and disk budgets as this share of the decoded set (streamed below 1)")
    args = parser.parse_args()
    srgb = args.layout == "srgb"
    root = Path(args.work or tempfile.mkdtemp(prefix="srx4-full-"))
    figures = {"machine": machine(), "layout": args.layout, "pairs": args.pairs, "test_frames": args.test_frames,
               "nproc": args.nproc}
    print(f"fabricating {args.pairs} pairs + {args.test_frames} test frames in {root} ...", flush=True)
    figures["fabricate_s"] = round(fabricate(root / "comp", args.pairs, args.test_frames, os.cpu_count() or 1,
                                             args.layout), 1)
    figures["png_gb"] = round(du(root / "comp") / 1e9, 2)
    work, cache_dir = root / "work", root / "cache"
    shutil.rmtree(work, ignore_errors=True)
    cache_dir.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE")}
    env.update(SRX4_WORK_DIR=str(work), SRX4_KAGGLE_ROOT=str(root / "no-kaggle"), PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // args.nproc)))
    run_args = ["--data", str(root / "comp/train"), "--run-name", "full", "--device", args.device,
                "--amp-dtype", args.amp_dtype, "--val-limit", str(args.val_limit), "--final-limit", str(args.val_limit),
                "--cache-dir", str(cache_dir), "--checkpoint-every", "5", "--epochs", "100",
                "--time-limit", str(args.train_minutes / 60), "--gpu-memory-gb", str(args.memory_cap_gb)]
    if srgb:        # budgets far below the decoded set: the streaming path
        decoded_gb = args.pairs * HR_W * HR_H * 3 * (1 + 1 / SCALE ** 2) / 2**30
        budget = f"{decoded_gb * args.budget_fraction:.3f}"
        run_args += ["--ram-budget-gb", budget, "--disk-budget-gb", budget]
        figures["decoded_gb"], figures["budget_gb"] = round(decoded_gb, 2), float(budget)
    run_dir = work / "logs/full"
    watcher = Watcher(cache_dir)
    watcher.start()

    # run 1: killed with SIGKILL once it has trained and checkpointed
    started = time.time()
    proc = launch(args, run_args, env)
    while proc.poll() is None:
        if log_times(run_dir / "train.log") is not None and (run_dir / "last.ckpt").is_file():
            break
        time.sleep(1)
    figures["first_step_s"] = log_times(run_dir / "train.log")
    figures["first_step_wall_s"] = round(time.time() - started, 1)
    time.sleep(20)
    figures["killed_processes"] = len(kill_tree(proc.pid))
    proc.wait()
    time.sleep(1)
    figures["cache_left_after_kill_gb"] = round(du(cache_dir) / 1e9, 2)

    # run 2: resumed; reuses the complete cache the kill left
    started = time.time()
    shutil.move(str(run_dir / "train.log"), str(run_dir / "train_killed.log"))
    proc = launch(args, ["--resume", str(run_dir / "last.ckpt"), "--time-limit", str(args.train_minutes / 60)], env)
    rc = proc.wait()
    figures["resume_rc"] = rc
    figures["resume_first_step_s"] = log_times(run_dir / "train.log")
    figures["resume_total_s"] = round(time.time() - started, 1)
    watcher.stop = True
    watcher.join()
    figures["cache_peak_gb"] = round(watcher.peak_disk / 1e9, 2)
    figures["cache_left_after_exit_gb"] = round(du(cache_dir) / 1e9, 3)
    figures["leftover_in_tmp"] = sorted(p.name for p in Path(tempfile.gettempdir()).glob("srx4-cache-*"))
    figures["peak_rss_gb"] = {r: round(v["rss"] / 1e9, 2) for r, v in sorted(watcher.ranks.items())}
    figures["peak_anon_gb"] = {r: round(v["anon"] / 1e9, 2) for r, v in sorted(watcher.ranks.items())}
    text = (run_dir / "train.log").read_text()
    rows = list(csv.DictReader(io.StringIO((run_dir / "metrics.csv").read_text())))
    last = rows[-1]
    train_s, val_s, samples = float(last["train_seconds"]), float(last["val_seconds"]), int(last["samples"])
    config = json.loads((run_dir / "config.json").read_text())
    ckpt_split = json.loads((run_dir / "split.json").read_text())
    n_train = len(ckpt_split["train"])
    epoch_samples = n_train * config["patches_per_image"]
    killed_samples = int(re.search(r"\((\d+) seen", text).group(1)) if re.search(r"\((\d+) seen", text) else 0
    rate = (samples - killed_samples) / max(train_s, 1e-9)                       # samples/s, all ranks
    figures["train_samples_per_s"] = round(rate, 2)
    figures["epoch_train_s_projected"] = round(epoch_samples / rate, 0)
    per_image = val_s / max(args.val_limit, 1)          # the ranks validate their share in parallel
    figures["val_s_per_image_measured"] = round(per_image, 2)
    figures["epoch_val_s_projected_100"] = round(per_image * 100, 0)
    figures["val_share_of_epoch_projected"] = round(per_image * 100 / max(epoch_samples / rate, 1e-9), 3)
    figures["rows"] = len(rows)

    # predict a few test frames, project to all; the CSV at full size from copies of them
    test_lr = root / "comp/test/lr"
    subset = root / "test_subset"
    shutil.rmtree(subset, ignore_errors=True)
    subset.mkdir()
    names = sorted(p.name for p in test_lr.iterdir())
    predict_frames = len(names) if srgb else args.predict_frames       # 64x64 crops: all of them
    for name in names[:predict_frames]:
        os.link(test_lr / name, subset / name)
    shutil.rmtree(root / "pred", ignore_errors=True)
    t = time.time()
    subprocess.run([sys.executable, str(REPO / "src/predict.py"), "--input", str(subset), "--output",
                    str(root / "pred"), "--device", args.device, "--amp-dtype", args.amp_dtype],
                   cwd=REPO, env=env, check=True)
    predict_s = time.time() - t
    figures["predict_s_per_frame"] = round(predict_s / predict_frames, 3)
    figures["predict_all_s_projected" if not srgb else "predict_all_s"] = round(predict_s / predict_frames * len(names), 0)
    full = root / "pred_all"
    shutil.rmtree(full, ignore_errors=True)
    full.mkdir()
    made = sorted((root / "pred").glob("*.png"))
    for k, name in enumerate(names):
        os.link(made[k % len(made)], full / name)
    t = time.time()
    subprocess.run([sys.executable, str(REPO / "src/make_submission.py"), "--input", str(full), "--lr-dir",
                    str(test_lr), "--sample", str(root / "comp/sample_submission.csv"), "--output",
                    str(root / "submission.csv")], cwd=REPO, env=env, check=True)
    figures["csv_s"] = round(time.time() - t, 1)
    figures["csv_gb"] = round((root / "submission.csv").stat().st_size / 1e9, 2)
    if srgb:
        head = (root / "submission.csv").open().readline().strip()
        figures["csv_header"] = head
        figures["data_path_line"] = next((line.split(" ", 2)[2] for line in text.splitlines() if " data path: " in line), "")
        figures["test_to_csv_s"] = round(figures["predict_all_s"] + figures["csv_s"], 0)
    else:
        figures["test_to_csv_s_projected"] = round(figures["predict_all_s_projected"] + figures["csv_s"], 0)
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
