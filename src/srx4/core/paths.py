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

from srx4.core import layout

REPO = Path(__file__).resolve().parents[3]     # src/srx4/core/paths.py -> the repo


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


def weights_dir() -> Path:
    """Shipped weights: <repo>/weights/<name>/ (best.safetensors, model.json, CARD.md);
    SRX4_WEIGHTS_DIR moves it (a Kaggle dataset of them, tests)."""
    return Path(os.environ.get("SRX4_WEIGHTS_DIR", REPO / "weights"))


def shipped_weights(name: str):
    """The folder of shipped weights called `name` (e.g. srresnet-x4), or None."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    folder = weights_dir() / name
    return folder if (folder / layout.WEIGHTS).is_file() else None


def shipped_names() -> list:
    root = weights_dir()
    return sorted(p.name for p in root.iterdir() if (p / layout.WEIGHTS).is_file()) if root.is_dir() else []


RECOMMENDED = ("srresnet-x4", "span-x4")   # the shipped weights to use when none are named, best first


def recommended_weights():
    """The first of RECOMMENDED that is shipped (its folder), or None."""
    return next((shipped_weights(n) for n in RECOMMENDED if shipped_weights(n)), None)


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


def find_sample_submission():
    """The competition's sample submission CSV (Kaggle input, else data/), or None."""
    roots = [kaggle_root() / "input"] if on_kaggle() else []
    roots.append(work_dir() / "data")
    for root in roots:
        if root.is_dir():
            found = sorted(p for p in root.rglob("*.csv") if "sample" in p.name.lower())
            if found:
                return found[0]
    return None


COMPETITION_FILE = "competition.txt"       # download.py writes the slug there, beside the data


def competition_slug(known) -> str:
    """The competition this data is from, when it is one of `known` slugs: on Kaggle a folder
    of that name under /kaggle/input (or input/competitions), else data/competition.txt; ""."""
    if on_kaggle():
        for root in (kaggle_root() / "input", kaggle_root() / "input" / "competitions"):
            for slug in known:
                if (root / slug).is_dir():
                    return slug
    try:
        slug = (work_dir() / "data" / COMPETITION_FILE).read_text().strip()
    except OSError:
        return ""
    return slug if slug in known else ""


def default_test_dir() -> Path:
    """Test LR images: Kaggle input, else data/test/lr, else the demo's test LR."""
    if on_kaggle():
        found = find_kaggle_test_lr()
        if found:
            return found
    local = work_dir() / "data" / "test" / "lr"
    return local if local.is_dir() else demo_dir() / "test" / "lr"


def read_only(folder: Path) -> bool:
    """A folder this run must not write to: Kaggle's input (mounted read-only; as root
    os.access says writable anyway) or one without write permission."""
    folder = Path(folder).resolve()
    kaggle_input = (kaggle_root() / "input").resolve()
    return kaggle_input == folder or kaggle_input in folder.parents or not os.access(folder, os.W_OK)


def _record(path: Path, entry: dict):
    from srx4.core.io import write_json
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {k: str(v) for k, v in entry.items()})


def record_last_run(run_dir: Path):
    import time
    _record(logs_dir() / layout.LAST_RUN, {"run": Path(run_dir).name, "dir": Path(run_dir).resolve(),
                                            "finished": time.time()})


def record_last_prediction(png_dir: Path, weights: str):
    _record(submissions_dir() / layout.LAST_PREDICTION, {"png_dir": Path(png_dir).resolve(), "weights": weights})


def _read(path: Path):
    import json
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


SESSION_START_ENV = "SRX4_SESSION_START"   # epoch seconds the Kaggle kernel started (kernels/kernel_template.py)


def session_start():
    """When this Kaggle session started (SRX4_SESSION_START), or None."""
    try:
        return float(os.environ[SESSION_START_ENV])
    except (KeyError, ValueError):
        return None


def last_run():
    """The run folder train.py finished last (logs/last_run.json), or None. On Kaggle a
    run finished before this session started is stale (an attached earlier output)."""
    entry = _read(logs_dir() / layout.LAST_RUN)
    if not entry or not Path(entry["dir"]).is_dir():
        return None
    start = session_start()
    if on_kaggle() and start is not None and float(entry.get("finished", 0)) < start:
        return None
    return Path(entry["dir"])


def last_prediction():
    """(PNG folder, weights) that predict.py wrote last, or None."""
    entry = _read(submissions_dir() / layout.LAST_PREDICTION)
    return (Path(entry["png_dir"]), entry.get("weights", "")) if entry and Path(entry["png_dir"]).is_dir() else None
