"""Run a tiny two-rank training under torchrun (gloo, CPU) many times in a row and count
the runs that did not exit cleanly: the check behind "DDP teardown" (a rank once died
with SIGABRT, "terminate called without an active exception", after its run finished).

In:  real image crops (scikit-image photos), made in a temp folder.
Out: one line per run, then "N clean of M".

    python benchmarks/repeat_ddp.py --runs 30
    python benchmarks/repeat_ddp.py --runs 30 --busy     # beside a CPU hog, as beside another test run
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, free_port

sys.path.insert(0, str(REPO / "tests"))
from conftest import TINY, make_pairs  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--busy", action="store_true", help="keep one core busy meanwhile")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="srx4-ddp-"))
    data = make_pairs(root / "data", count=8)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    clean = 0
    try:
        for k in range(args.runs):
            env = {key: v for key, v in os.environ.items() if not key.startswith("KAGGLE")}
            env.update(SRX4_WORK_DIR=str(root / f"w{k}"), SRX4_KAGGLE_ROOT=str(root / "none"), OMP_NUM_THREADS="1")
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
                   str(REPO / "src/train.py"), "--data", str(data), *TINY, "--epochs", "1", "--run-name", "d",
                   "--val-fraction", "0.4"]
            started = time.time()
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
            bad = done.returncode != 0 or "terminate called" in done.stderr or "SIGABRT" in done.stderr
            clean += not bad
            print(f"run {k + 1}: rc {done.returncode} {'FAILED' if bad else 'clean'} ({time.time() - started:.1f}s)",
                  flush=True)
            if bad:
                print(done.stderr[-1500:], flush=True)
    finally:
        if hog:
            hog.kill()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{clean} clean of {args.runs}")
    return 0 if clean == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
