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

from srx4.core.errors import DataError, MissingData
from srx4.image.codec import IMAGE_SUFFIXES, ImageError, image_size

SUB_IMAGE = re.compile(r"^(?P<source>.+)_s\d+$")  # 0001_s003.png: sub-image 3 of source 0001
FRAME = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)$")  # 00029, game1_00029: frame 29 of a sequence


@dataclass
class Pair:
    name: str
    lr_path: str
    hr_path: str
    lr_size: tuple  # (width, height)


@dataclass
class Hygiene:
    """What was left out of a data folder, and why; and what is used with a remark."""
    folder: str
    used: int = 0
    problems: dict = field(default_factory=dict)  # reason -> [file names] left out
    notes: dict = field(default_factory=dict)     # remark -> [pair names] used, but not as the others

    def add(self, reason: str, name: str):
        self.problems.setdefault(reason, []).append(name)

    def note(self, remark: str, name: str):
        self.notes.setdefault(remark, []).append(name)

    def summary(self, first: int = 5) -> str:
        lines = [f"data {self.folder}: {self.used} pairs used, "
                 f"{sum(len(v) for v in self.problems.values())} files left out"]
        for reason, names in sorted(self.problems.items()):
            shown = ", ".join(names[:first]) + (" ..." if len(names) > first else "")
            lines.append(f"  {len(names)} {reason}: {shown}")
        for remark, names in sorted(self.notes.items()):
            shown = ", ".join(names[:first]) + (" ..." if len(names) > first else "")
            lines.append(f"  used, {remark}: {len(names)}: {shown}")
        return "\n".join(lines)

    def to_dict(self):
        return {"folder": self.folder, "used": self.used, "problems": self.problems, "notes": self.notes}


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
            raise MissingData(f"{d}: folder not found (expected {data_dir}/lr and {data_dir}/hr)")
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


def frame_number(source: str):
    """A numbered frame '00029' or 'game1_00029' -> ('game1_', 29); None if not numbered."""
    m = FRAME.match(source)
    return (m.group("prefix"), int(m.group("number"))) if m else None


def split_groups(names, block: int = 0):
    """name -> group, the unit a split never cuts: a source (its `_sNNN` sub-images),
    and numbered frames in blocks of `block` consecutive frames of one sequence
    (same prefix, sorted by number; 0 = automatic, 1/100 of the numbered frames).
    Returns (groups dict, block size used)."""
    sources = sorted({source_of(n) for n in names})
    numbered = {s: frame_number(s) for s in sources}
    sequences = {}
    for s, key in numbered.items():
        if key is not None:
            sequences.setdefault(key[0], []).append((key[1], s))
    count = sum(len(v) for v in sequences.values())
    block = block or max(1, -(-count // 100))
    group_of_source = {}
    for prefix, frames in sequences.items():
        for k, (_, s) in enumerate(sorted(frames)):
            group_of_source[s] = f"{prefix}#{k // block:05d}"
    return {n: group_of_source.get(source_of(n), source_of(n)) for n in names}, block


def split_pairs(names, val_fraction: float, seed: int, data_dir: str = "", block: int = 0) -> dict:
    """Seeded split by group (`split_groups`): sub-images of one photo, and runs of
    consecutive numbered frames (near-duplicates), each stay on one side.

    The same names, fraction, seed and block give the same split on any machine
    (numpy's PCG64 stream is platform independent)."""
    names = sorted(names)
    if not names:
        raise DataError(f"{data_dir}: no usable image pairs")
    if val_fraction <= 0:
        return {"seed": seed, "val_fraction": val_fraction, "train": names, "val": []}
    group_of, block = split_groups(names, block)
    groups = sorted(set(group_of.values()))
    if len(groups) < 2:
        raise DataError(f"{data_dir}: {len(names)} pair(s) from {len(groups)} source image(s) is too few "
                         f"for a validation split; add data or use --val-fraction 0")
    order = np.random.default_rng(seed).permutation(len(groups))
    target = val_fraction * len(names)
    by_group = {}
    for n in names:
        by_group.setdefault(group_of[n], []).append(n)
    val, val_groups = [], []
    for i in order:
        if len(val) >= target or len(val) + len(by_group[groups[i]]) >= len(names):
            continue
        val += by_group[groups[i]]
        val_groups.append(groups[i])
        if len(val) >= target:
            break
    val_set = set(val)
    train = [n for n in names if n not in val_set]
    numbered_blocks = sorted(g for g in val_groups if "#" in g)
    return {"seed": seed, "val_fraction": val_fraction, "train": train, "val": sorted(val),
            "frame_block": block, "val_groups": len(val_groups),
            "val_frame_blocks": [[by_group[g][0], by_group[g][-1]] for g in numbered_blocks]}


def describe_split(split: dict) -> str:
    """One line for the log: sizes and how near-duplicates were kept apart."""
    text = f"split: {len(split['train'])} train, {len(split['val'])} val (seed {split['seed']})"
    blocks = split.get("val_frame_blocks") or []
    if blocks:
        text += (f"; numbered frames kept in blocks of {split['frame_block']} consecutive frames, "
                 f"{len(blocks)} blocks on the validation side (first {blocks[0][0]}..{blocks[0][1]})")
    return text


def save_split(split: dict, path):
    from srx4.core.io import atomic_write_text
    atomic_write_text(path, json.dumps(split, indent=1))


def load_split(path) -> dict:
    return json.loads(Path(path).read_text())
