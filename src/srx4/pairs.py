"""Find the training pairs in a data folder and split them, reproducibly.

In:  DIR/lr/NAME and DIR/hr/NAME, paired by file name.
Out: `scan_pairs` -> (pairs, Hygiene); `split_pairs` -> {"train": [...], "val": [...]}.

Left out and reported (never fatal, never silently resized): hidden files,
folders, files that are not images (by suffix or by header), LR without HR,
HR without LR, and pairs whose HR is not exactly scale x LR. Only headers are
read here; pixels are decoded once, later, by the dataset cache.
"""
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from srx4.images import IMAGE_SUFFIXES, ImageError, image_size

SUB_IMAGE = re.compile(r"^(?P<source>.+)_s\d+$")  # 0001_s003.png: sub-image 3 of source 0001


@dataclass
class Pair:
    name: str
    lr_path: str
    hr_path: str
    lr_size: tuple  # (width, height)


@dataclass
class Hygiene:
    """What was left out of a data folder, and why."""
    folder: str
    used: int = 0
    problems: dict = field(default_factory=dict)  # reason -> [file names]

    def add(self, reason: str, name: str):
        self.problems.setdefault(reason, []).append(name)

    def summary(self, first: int = 5) -> str:
        lines = [f"data {self.folder}: {self.used} pairs used, "
                 f"{sum(len(v) for v in self.problems.values())} files left out"]
        for reason, names in sorted(self.problems.items()):
            shown = ", ".join(names[:first]) + (" ..." if len(names) > first else "")
            lines.append(f"  {len(names)} {reason}: {shown}")
        return "\n".join(lines)

    def to_dict(self):
        return {"folder": self.folder, "used": self.used, "problems": self.problems}


def _image_files(folder: Path, side: str, hygiene: Hygiene) -> dict:
    """name -> path for the usable files of one side, reporting the rest."""
    files = {}
    for path in sorted(folder.iterdir()):
        label = f"{side}/{path.name}"
        if path.name.startswith("."):
            hygiene.add("hidden files", label)
        elif path.is_dir():
            hygiene.add("folders", label)
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            hygiene.add("not images (suffix)", label)
        else:
            files[path.name] = path
    return files


def scan_pairs(data_dir, scale: int):
    """Pair lr/NAME with hr/NAME. Returns (list of Pair sorted by name, Hygiene)."""
    data_dir = Path(data_dir)
    lr_dir, hr_dir = data_dir / "lr", data_dir / "hr"
    for d in (lr_dir, hr_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: folder not found (expected {data_dir}/lr and {data_dir}/hr)")
    hygiene = Hygiene(str(data_dir))
    lr_files = _image_files(lr_dir, "lr", hygiene)
    hr_files = _image_files(hr_dir, "hr", hygiene)
    for name in sorted(set(lr_files) - set(hr_files)):
        hygiene.add("LR without HR", name)
    for name in sorted(set(hr_files) - set(lr_files)):
        hygiene.add("HR without LR", name)
    pairs = []
    for name in sorted(set(lr_files) & set(hr_files)):
        try:
            lr_w, lr_h = image_size(lr_files[name])
            hr_w, hr_h = image_size(hr_files[name])
        except ImageError:
            hygiene.add("not images (unreadable header)", name)
            continue
        if (hr_w, hr_h) != (scale * lr_w, scale * lr_h):
            hygiene.add(f"HR not {scale}x LR", f"{name} ({lr_w}x{lr_h} vs {hr_w}x{hr_h})")
            continue
        pairs.append(Pair(name, str(lr_files[name]), str(hr_files[name]), (lr_w, lr_h)))
    hygiene.used = len(pairs)
    return pairs, hygiene


def source_of(name: str) -> str:
    """Sub-images of one source share a group: '0001_s003.png' -> '0001'."""
    stem = Path(name).stem
    m = SUB_IMAGE.match(stem)
    return m.group("source") if m else stem


def split_pairs(names, val_fraction: float, seed: int, data_dir: str = "") -> dict:
    """Seeded split by source group, so sub-images of one photo stay on one side.

    The same names, fraction and seed give the same split on any machine
    (numpy's PCG64 stream is platform independent)."""
    names = sorted(names)
    if not names:
        raise ValueError(f"{data_dir}: no usable image pairs")
    if val_fraction <= 0:
        return {"seed": seed, "val_fraction": val_fraction, "train": names, "val": []}
    groups = sorted({source_of(n) for n in names})
    if len(groups) < 2:
        raise ValueError(f"{data_dir}: {len(names)} pair(s) from {len(groups)} source image(s) is too few "
                         f"for a validation split; add data or use --val-fraction 0")
    order = np.random.default_rng(seed).permutation(len(groups))
    target = val_fraction * len(names)
    by_group = {}
    for n in names:
        by_group.setdefault(source_of(n), []).append(n)
    val = []
    for i in order:
        if len(val) >= target or len(val) + len(by_group[groups[i]]) >= len(names):
            continue
        val += by_group[groups[i]]
        if len(val) >= target:
            break
    val_set = set(val)
    train = [n for n in names if n not in val_set]
    return {"seed": seed, "val_fraction": val_fraction, "train": train, "val": sorted(val)}


def save_split(split: dict, path):
    from srx4.checkpoint import atomic_write_text
    atomic_write_text(path, json.dumps(split, indent=1))


def load_split(path) -> dict:
    return json.loads(Path(path).read_text())
