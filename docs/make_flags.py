"""Write docs/flags.md from TrainConfig (srx4/train/flags_doc.py): run it after changing a flag.

    python docs/make_flags.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from srx4.core.io import atomic_write_bytes  # noqa: E402
from srx4.train.flags_doc import render  # noqa: E402

if __name__ == "__main__":
    target = Path(__file__).resolve().parent / "flags.md"
    atomic_write_bytes(target, render().encode())
    print(f"wrote {target}")
