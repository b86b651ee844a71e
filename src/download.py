"""Download a competition's data with the kaggle CLI, unzip it, find its layout.

In:  --competition SLUG (the name in the competition's URL); --out (default data/).
Out: the files under --out, unzipped; prints the training lr/ + hr/ folders and
     the test LR folder it found, with image counts, and what to pass to train.py.

    python src/download.py --competition gnr-638
"""
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from srx4.config import option, parse_config
from srx4.images import list_images
from srx4.kaggle_cli import KaggleError, run_kaggle


@dataclass
class DownloadConfig:
    competition: str = option("", "the competition's URL slug")
    out: str = option("data", "folder to download and unzip into")


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


def main(argv=None):
    config = parse_config(DownloadConfig, "Download and unzip a competition's data.", argv)
    out = Path(config.out)
    try:
        if not config.competition:
            raise KaggleError("--competition SLUG is required (the name in the competition's URL)")
        out.mkdir(parents=True, exist_ok=True)
        print(run_kaggle(["competitions", "download", "-c", config.competition, "-p", str(out)]))
    except KaggleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for archive in sorted(out.glob("*.zip")):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(out)
        print(f"unzipped {archive.name}")
    lines = describe_layout(out)
    print("\n".join(lines) if lines else f"no lr/ + hr/ folders found under {out}: arrange them as README.md says")
    return 0


if __name__ == "__main__":
    sys.exit(main())
