"""Where things are: the one module that knows local paths vs Kaggle's.

Local:  data in <repo>/data, runs in <repo>/logs, outputs in <repo>/submissions.
Kaggle: the competition read-only under /kaggle/input (found by searching:
        /kaggle/input/<slug>/... and /kaggle/input/competitions/<slug>/... both
        occur), everything written under /kaggle/working.
The Kaggle root can be moved with SRX4_KAGGLE_ROOT (tests build a fake tree),
and the local writable root (default: the repo) with SRX4_WORK_DIR.
"""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def kaggle_root() -> Path:
    return Path(os.environ.get("SRX4_KAGGLE_ROOT", "/kaggle"))


def on_kaggle() -> bool:
    return bool(os.environ.get("KAGGLE_KERNEL_RUN_TYPE")) or (kaggle_root() / "input").is_dir()


def work_dir() -> Path:
    """Writable root: /kaggle/working on Kaggle, SRX4_WORK_DIR if set, the repo otherwise."""
    if on_kaggle():
        return kaggle_root() / "working"
    return Path(os.environ.get("SRX4_WORK_DIR", REPO))


def logs_dir() -> Path:
    return work_dir() / "logs"


def submissions_dir() -> Path:
    return work_dir() / "submissions"


def submission_csv() -> Path:
    return submissions_dir() / "submission.csv"


def demo_dir() -> Path:
    return work_dir() / "data" / "demo"


def _search_input(predicate):
    root = kaggle_root() / "input"
    if not root.is_dir():
        return None
    for dirpath, dirnames, _ in sorted(os.walk(root, followlinks=True)):
        dirnames.sort()
        if predicate(Path(dirpath), set(dirnames)):
            return Path(dirpath)
    return None


def find_kaggle_train() -> Path:
    """The first folder under /kaggle/input holding lr/ and hr/ that is not a test set."""
    return _search_input(lambda p, d: {"lr", "hr"} <= d and not p.name.lower().startswith("test"))


def find_kaggle_test_lr() -> Path:
    """The test LR folder: <x>/test/lr, or a test* folder of images."""
    found = _search_input(lambda p, d: p.name.lower().startswith("test") and "lr" in d)
    if found:
        return found / "lr"
    return _search_input(lambda p, d: p.name.lower().startswith("test") and not d and any(p.iterdir()))


def default_train_dir():
    """Competition training data if present (Kaggle input, else data/train); None means demo."""
    if on_kaggle():
        found = find_kaggle_train()
        if found:
            return found
    local = work_dir() / "data" / "train"
    return local if (local / "lr").is_dir() and (local / "hr").is_dir() else None


def default_test_dir() -> Path:
    """Test LR images: Kaggle input, else data/test/lr, else the demo's test LR."""
    if on_kaggle():
        found = find_kaggle_test_lr()
        if found:
            return found
    local = work_dir() / "data" / "test" / "lr"
    return local if local.is_dir() else demo_dir() / "test" / "lr"


def newest_run(folder: Path = None):
    """The most recently written run folder that has best weights, or None."""
    folder = folder or logs_dir()
    runs = [p for p in folder.glob("*/best.safetensors")] if folder.is_dir() else []
    return max(runs, key=lambda p: p.stat().st_mtime).parent if runs else None
