"""submissions/log.csv: every CSV make_submission.py wrote and every upload submit.py
made, each against the run whose weights made it, so a leaderboard score can be traced
back to its weights.

    append_entry(event="csv", csv=path, ...)       # make_submission.py
    entry_for(csv_path)                             # the newest "csv" entry of that file
"""
import csv
import io
import json
import time
from pathlib import Path

from srx4.core import layout
from srx4.core import paths

COLUMNS = ["time", "event", "csv", "sha256", "rows", "run", "run_dir", "weights", "weights_sha256", "tta",
           "png_dir", "competition", "message"]


def lr_dir_of(png_dir: Path):
    """The LR folder predict.py made `png_dir` from (its manifest), or None."""
    try:
        recorded = json.loads((Path(png_dir) / layout.PNG_MANIFEST).read_text()).get(layout.PNG_MANIFEST_LR_DIR)
    except (OSError, ValueError):
        return None
    return Path(recorded) if recorded else None


def log_path() -> Path:
    return paths.submissions_dir() / layout.SUBMISSION_LOG


def weights_of(png_dir: Path) -> dict:
    """What predict.py recorded about the weights that wrote `png_dir` (empty if nothing)."""
    try:
        identity = json.loads((Path(png_dir) / layout.PNG_MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    weights = identity.get("weights", "")
    run_dirs = [Path(w).parent for w in weights.split(";")] if weights else []   # several: an ensemble
    return {"run": "+".join(d.name for d in run_dirs) or identity.get("model", ""),
            "run_dir": ";".join(map(str, run_dirs)), "weights": weights, "weights_sha256": identity.get("sha256", ""),
            "tta": identity.get("tta", "")}


def append_entry(**entry):
    """One row appended (the header first when the log is new); one write, so a kill
    leaves whole rows."""
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), **entry}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    if not path.is_file() or path.stat().st_size == 0:
        writer.writeheader()
    writer.writerow(row)
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write(buffer.getvalue())


def entries() -> list:
    path = log_path()
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def entry_for(csv_path: Path, sha256: str = None):
    """The newest "csv" entry for this file (the same bytes when sha256 is given), or None."""
    target = str(Path(csv_path).resolve())
    found = [e for e in entries() if e["event"] == "csv" and e["csv"] == target and (sha256 is None or
                                                                                   e["sha256"] == sha256)]
    return found[-1] if found else None
