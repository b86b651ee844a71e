"""Optional experiment tracking for train.py (`--tracker tensorboard|mlflow`, off by default).

- tensorboard: `torch.utils.tensorboard` event files in logs/<run>/tensorboard/:
  every metrics.csv figure as a scalar per epoch, the labelled LR | bicubic | SR | HR
  strip as an image, and the settings with the final figures as hyperparameters.
  View: `tensorboard --logdir logs`.
- mlflow: a local SQLite store, logs/mlflow.db (artifacts in logs/mlflow-artifacts/):
  the settings as params, per-epoch metrics, the strips, and at the end the best
  weights, model.json, summary.json and report.html as artifacts. A resumed run
  continues the same MLflow run (its id is kept in logs/<run>/mlflow_run.json).
  View: `mlflow ui --backend-store-uri sqlite:///logs/mlflow.db`.

Both packages are optional (requirements-extras.txt); a missing one is one line
saying what to install, before anything is trained. Only the main process tracks.
"""
import importlib
import json
import time
from pathlib import Path

import numpy as np

from srx4.core import layout
from srx4.core.errors import UserError

INSTALL = "pip install -r requirements-extras.txt"
EXPERIMENT = "srx4"
MLFLOW_RUN_FILE = "mlflow_run.json"


class TrackerError(UserError, RuntimeError):
    """A tracker that cannot start (its package is missing): one line for the user."""


def numbers(row: dict) -> dict:
    """The numeric fields of a metrics row (metrics.csv holds text)."""
    out = {}
    for key, value in row.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def hyperparameters(cfg: dict) -> dict:
    """Settings as scalars a tracker accepts (None and empty dropped, the rest str/int/float/bool)."""
    return {k: (v if isinstance(v, (int, float, bool)) else str(v)) for k, v in cfg.items() if v not in ("", None)}


class TensorBoardTracker:
    def __init__(self, run_dir: Path, cfg: dict):
        from torch.utils.tensorboard import SummaryWriter
        self.folder = run_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.folder))
        self.cfg = cfg
        self.description = f"tensorboard: {self.folder} (view: tensorboard --logdir {run_dir.parent})"

    def epoch(self, row: dict, strip: np.ndarray = None):
        step = int(row["epoch"])
        for key, value in numbers(row).items():
            if key != "epoch":
                self.writer.add_scalar(f"{'val' if key.startswith(('val_', 'bicubic_')) else 'train'}/{key}",
                                       value, step)
        if strip is not None:
            self.writer.add_image("comparison: LR | bicubic | SR | HR", strip, step, dataformats="HWC")
        self.writer.flush()

    def finish(self, summary: dict, run_dir: Path):
        final = {"final/psnr": summary["model"]["psnr"], "final/score": summary["model"]["score"],
                 "final/gain_db": summary["gain_db"], "final/best_epoch": summary["best_epoch"]}
        self.writer.add_hparams(hyperparameters(self.cfg), final, run_name="hparams")
        self.writer.close()


class MlflowTracker:
    def __init__(self, run_dir: Path, cfg: dict):
        from mlflow.tracking import MlflowClient
        logs = run_dir.parent
        self.uri = f"sqlite:///{(logs / 'mlflow.db').resolve()}"
        self.client = MlflowClient(tracking_uri=self.uri)
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(
            EXPERIMENT, artifact_location=(logs / "mlflow-artifacts").resolve().as_uri())
        record = run_dir / MLFLOW_RUN_FILE
        self.run_id = json.loads(record.read_text())["run_id"] if record.is_file() else None
        if self.run_id is None:
            run = self.client.create_run(experiment_id, run_name=run_dir.name, tags={"srx4.run_dir": str(run_dir)})
            self.run_id = run.info.run_id
            from mlflow.entities import Param
            params = [Param(k, str(v)[:500]) for k, v in hyperparameters(cfg).items()]
            self.client.log_batch(self.run_id, params=params)
            from srx4.core.io import write_json
            write_json(record, {"run_id": self.run_id, "tracking_uri": self.uri})
        else:
            self.client.update_run(self.run_id, status="RUNNING")
        self.description = (f"mlflow: run {self.run_id} in {self.uri} (view: mlflow ui --backend-store-uri "
                            f"{self.uri})")

    def epoch(self, row: dict, strip: np.ndarray = None):
        from mlflow.entities import Metric
        step = int(row["epoch"])
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in numbers(row).items() if k != "epoch"]
        self.client.log_batch(self.run_id, metrics=metrics)
        if strip is not None:
            self.client.log_image(self.run_id, strip, artifact_file=f"samples/epoch_{step:03d}.png")

    def finish(self, summary: dict, run_dir: Path):
        for key, value in (("final_psnr", summary["model"]["psnr"]), ("final_score", summary["model"]["score"]),
                           ("final_gain_db", summary["gain_db"]), ("best_epoch", summary["best_epoch"])):
            self.client.log_metric(self.run_id, key, float(value))
        for name in (layout.WEIGHTS, layout.MODEL_CONFIG, layout.SUMMARY, layout.REPORT):
            if (run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(run_dir / name),
                                         artifact_path="weights" if name in (layout.WEIGHTS, layout.MODEL_CONFIG)
                                         else None)
        self.client.set_terminated(self.run_id, status="FINISHED")


# --tracker NAME -> its class (NAME is also the package it needs): the registry
TRACKERS = {"": None, "tensorboard": TensorBoardTracker, "mlflow": MlflowTracker}


def check_tracker(name: str):
    """Fail before any work when --tracker names something unknown or its package is missing."""
    if name and name not in TRACKERS:
        raise TrackerError(f"--tracker {name!r}: expected one of {', '.join(t for t in TRACKERS if t)}")
    if name:
        try:
            importlib.import_module(name)
        except ImportError:
            raise TrackerError(f"--tracker {name} needs the {name} package: {INSTALL}") from None


def open_tracker(name: str, run_dir: Path, cfg: dict):
    """The tracker for --tracker `name` (None when off); TrackerError when it cannot start."""
    check_tracker(name)
    if not name:
        return None
    return TRACKERS[name](Path(run_dir), cfg)
