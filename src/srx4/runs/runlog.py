"""A run folder's text outputs: train.log (appended line by line), metrics.csv
(rewritten atomically each epoch), the hygiene report, and the bicubic warning."""
import csv
import io
import json
import time
from pathlib import Path

from tqdm import tqdm

from srx4.core import layout
from srx4.core.io import atomic_write_text, write_csv

METRIC_COLUMNS = ["epoch", "step", "samples", "train_loss", "val_psnr", "val_psnr_y", "val_ssim", "val_score",
                  "bicubic_psnr", "bicubic_score", "learning_rate", "dropped_samples", "skipped_steps", "train_seconds",
                  "val_seconds", "seconds"]


class RunLog:
    def __init__(self, run_dir, enabled: bool = True):
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.rows = []
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, message: str, echo: bool = True):
        """Print a line (main process only) and append it to train.log."""
        if not self.enabled:
            return
        if echo:
            tqdm.write(message)   # above a progress bar that is running, not through it
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.run_dir / layout.TRAIN_LOG, "a", encoding="utf-8") as f:
            f.write("".join(f"{stamp} {line}\n" for line in message.splitlines()))

    def load_rows(self, source_dir):
        """Earlier rows (a resumed run), up to the checkpoint's epoch."""
        path = Path(source_dir) / layout.METRICS
        if path.is_file():
            self.rows = list(csv.DictReader(io.StringIO(path.read_text())))

    def add_row(self, row: dict):
        self.rows = [r for r in self.rows if int(r["epoch"]) < int(row["epoch"])] + [row]
        if not self.enabled:
            return
        write_csv(self.run_dir / layout.METRICS, self.rows, METRIC_COLUMNS)

    def write_hygiene(self, hygiene, extra: dict = None):
        if not self.enabled:
            return
        report = hygiene.to_dict()
        report.update(extra or {})
        atomic_write_text(self.run_dir / layout.HYGIENE, json.dumps(report, indent=1) + "\n")
