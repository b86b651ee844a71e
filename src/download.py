"""Download a competition's data with the kaggle CLI, unzip it, find its layout.

In:  --competition SLUG (the name in the competition's URL); --out (default data/).
Out: the files under --out, unzipped; prints the training lr/ + hr/ folders and
     the test LR folder it found, with image counts, and what to pass to train.py.
     The download and the unzip show progress (bytes, rate, ETA when Kaggle lists
     the sizes).

    python src/download.py --competition gnr-638
"""
import re
import sys
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

from srx4.core import paths
from srx4.core.cli import option, parse_config, run_main
from srx4.core.errors import FlagError
from srx4.image.codec import list_images
from srx4.submit.kaggle_cli import KaggleError, run_kaggle
from srx4.core.progress import plain_interval, progress

UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


@dataclass
class DownloadConfig:
    competition: str = option("", "the competition's URL slug")
    out: str = option("data", "folder to download and unzip into")
    quiet: bool = option(False, "no progress bars or progress lines")


def describe_layout(root: Path) -> list:
    """Lines naming every lr/ + hr/ pair of folders and every test LR folder under root."""
    lines = []
    for folder in sorted(p for p in root.rglob("*") if p.is_dir()):
        if (folder / "lr").is_dir() and (folder / "hr").is_dir():
            lines.append(f"train pairs: {folder} ({len(list_images(folder / 'lr'))} lr, "
                         f"{len(list_images(folder / 'hr'))} hr) -> python src/train.py --data {folder}")
        elif folder.name == "lr" and not (folder.parent / "hr").is_dir():
            lines.append(f"test LR: {folder} ({len(list_images(folder))} images) -> "
                         f"python src/predict.py --input {folder}")
    return lines


def listed_bytes(listing: str):
    """Total size from `kaggle competitions files` output ("28GB", "512 MB" ...), or None."""
    sizes = re.findall(r"(?<![\w.])(\d+(?:\.\d+)?)\s*(TB|GB|MB|KB|B)\b", listing)
    return int(sum(float(v) * UNITS[u] for v, u in sizes)) or None


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def download_with_progress(slug: str, out: Path, total, quiet: bool = False):
    """Run the kaggle CLI's download while a bar follows the bytes arriving in `out` (the folder
    is read once a second, or at the plain-progress interval when SRX4_PROGRESS_INTERVAL sets a shorter one)."""
    start, done = folder_bytes(out), threading.Event()
    every = min(1.0, max(0.05, plain_interval()))
    bar = progress(total=total, desc="download", unit="B", unit_scale=True, quiet=quiet)

    def watch():
        seen = 0
        while not done.wait(every):
            now = folder_bytes(out) - start
            bar.update(max(0, now - seen))
            seen = max(seen, now)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        return run_kaggle(["competitions", "download", "-c", slug, "-p", str(out)])
    finally:
        done.set()
        watcher.join()
        bar.close()


def unzip_with_progress(archive: Path, out: Path, quiet: bool = False):
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        bar = progress(total=sum(m.file_size for m in members), desc=f"unzip {archive.name}", unit="B",
                       unit_scale=True, quiet=quiet)
        for member in members:
            zf.extract(member, out)
            bar.update(member.file_size)
        bar.close()


def main(argv=None):
    config = parse_config(DownloadConfig, "Download and unzip a competition's data.", argv)
    out = Path(config.out)
    if not config.competition:
        raise FlagError("--competition SLUG is required (the name in the competition's URL)")
    out.mkdir(parents=True, exist_ok=True)
    try:
        total = listed_bytes(run_kaggle(["competitions", "files", "-c", config.competition], timeout=120))
    except KaggleError:
        total = None               # the listing is only for the ETA
    print(download_with_progress(config.competition, out, total, config.quiet))
    (out / paths.COMPETITION_FILE).write_text(config.competition + "\n")   # score.py names its leaderboard figure
    for archive in sorted(out.glob("*.zip")):
        unzip_with_progress(archive, out, config.quiet)
        print(f"unzipped {archive.name}")
    lines = describe_layout(out)
    print("\n".join(lines) if lines else f"no lr/ + hr/ folders found under {out}: arrange them as README.md says")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
