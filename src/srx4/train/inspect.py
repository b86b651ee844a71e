"""What a run folder, a last.ckpt or a weights file holds, as one dict (inspect_run.py).

`describe(target)`: target a run folder (logs/a), a last.ckpt, a .safetensors, or
the name of a folder of shipped weights under weights/. Raises InspectError with
one line for anything else (a foreign .pth, a broken file, a missing path). A run is
read back as the trainer wrote it: its TrainConfig (`from_saved`, any version) and
TrainState, so it sits in the train layer.
"""
import csv
import json
from pathlib import Path

import torch

from srx4.core import layout
from srx4.core.errors import UserError
from srx4.core import paths
from srx4.submit import submission_log
from srx4.runs.checkpoint import load_checkpoint
from srx4.models.weights import WeightsError, read_model_config

from srx4.train.config import from_saved
from srx4.train.state import TrainState


class InspectError(UserError, ValueError):
    """Something that is not a run, checkpoint or weights file of this repo (one line)."""


class NotARun(InspectError):
    """A path of another kind altogether (a log file, an empty folder): passed over when comparing."""


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def resolve_target(target: str) -> Path:
    path = Path(target)
    if path.exists():
        return path
    if paths.shipped_weights(target) is not None:
        return paths.shipped_weights(target)
    raise InspectError(f"{target}: no such run folder, checkpoint or weights file (nor shipped weights of that "
                       f"name in {paths.weights_dir()})")


def weights_summary(path: Path) -> dict:
    """Model config and parameter count of a .safetensors, read without building the model."""
    from safetensors import SafetensorError, safe_open
    try:
        config = read_model_config(path)
        with safe_open(str(path), "pt") as f:
            shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
    except (WeightsError, SafetensorError, OSError, ValueError) as err:
        raise InspectError(f"{path}: not readable as srx4 weights ({str(err).splitlines()[0][:160]})") from None
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    parameters = sum(int(torch.tensor(shape).prod()) if shape else 1 for k, shape in shapes.items()
                     if not k.endswith(buffers))
    return {"model": config, "parameters": parameters, "tensors": len(shapes)}


def describe_model(config: dict) -> str:
    name = config.get("name", "?")
    titles = {"srresnet": "SRResNet", "edsr": "EDSR-baseline", "span": "SPAN-style"}
    if name in titles:
        return (f"{titles[name]} x{config['scale']}: {config['num_blocks']} residual blocks x {config['channels']} "
                f"channels" + (", bicubic residual" if config.get("bicubic_residual") else ""))
    if name == "spandrel":
        return (f"{config.get('architecture')} x{config['scale']} through spandrel "
                f"({config.get('parameters', 0) / 1e6:.2f} M parameters, from {config.get('source') or '?'})")
    if name == "srcnn":
        return (f"SRCNN x{config['scale']}: kernels {'-'.join(map(str, config['kernel_sizes']))}"
                + (", Y only" if config.get("y_only") else ""))
    return f"{name} x{config.get('scale', '?')}"


def _is_srx4_checkpoint(path: Path) -> bool:
    try:
        state = load_checkpoint(path)
    except WeightsError:
        return False
    return isinstance(state, dict) and "train_config" in state


def _checkpoint(path: Path) -> dict:
    try:
        state = load_checkpoint(path)
    except WeightsError as err:
        raise InspectError(str(err)) from None
    if not isinstance(state, dict) or "train_config" not in state:
        raise InspectError(f"{path}: a torch file, but not an srx4 checkpoint (no train_config)")
    return state


def _run_seconds(run_dir: Path) -> float:
    try:
        with open(run_dir / layout.METRICS) as f:
            return round(sum(float(r["seconds"]) for r in csv.DictReader(f)), 1)
    except (OSError, KeyError, ValueError):
        return 0.0


def foreign_summary(path: Path) -> dict:
    """A model file of another project, as spandrel sees it."""
    from srx4.models import ForeignError, count_parameters, load_foreign
    try:
        model = load_foreign(path)
    except ForeignError as err:
        raise InspectError(str(err)) from None
    return {"model": model.config(), "parameters": count_parameters(model), "tensors": len(model.state_dict())}


def describe(target: str) -> dict:
    path = resolve_target(target)
    info = {"path": str(path.resolve())}
    if path.is_file() and path.suffix == ".safetensors":
        from srx4.models.weights import is_foreign
        summary = foreign_summary(path) if is_foreign(path) else weights_summary(path)
        return {**info, "kind": "weights", **summary}
    if path.is_file() and path.suffix in (".pth", ".pt", ".bin") and not _is_srx4_checkpoint(path):
        return {**info, "kind": "weights", **foreign_summary(path)}
    if path.is_file() and path.suffix in (".ckpt", ".pt", ".pth"):
        run_dir, checkpoint_path = path.parent, path
    elif path.is_dir():
        run_dir, checkpoint_path = path, path / layout.CHECKPOINT
        if not checkpoint_path.is_file() and (path / layout.WEIGHTS).is_file():   # weights only (shipped, a dataset)
            return {**info, "kind": "weights", **weights_summary(path / layout.WEIGHTS), "card": _card(path)}
        if not checkpoint_path.is_file():
            raise NotARun(f"{path}: no {layout.CHECKPOINT} or {layout.WEIGHTS} in it (not a training run folder)")
    else:
        raise NotARun(f"{path}: not a run folder, checkpoint (.ckpt) or weights file (.safetensors)")
    state = _checkpoint(checkpoint_path)
    cfg = from_saved(state["train_config"])
    progress = TrainState.from_checkpoint(state)
    model = state.get("model_config") or _json(run_dir / layout.MODEL_CONFIG) or {}
    parameters = sum(v.numel() for k, v in state["model"].items()
                     if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    split = state.get("split") or _json(run_dir / layout.SPLIT) or {}
    hygiene = _json(run_dir / layout.HYGIENE) or {}
    summary = _json(run_dir / layout.SUMMARY)
    best = progress.best
    select, epoch, epochs = cfg.select, progress.epoch, cfg.epochs
    finished = summary is not None and int(summary.get("epochs_done", -1)) == epoch
    resume = f"python src/train.py --resume {checkpoint_path}"
    if epoch < epochs:
        resumable = f"yes, at epoch {epoch + 1} of {epochs}: {resume}"
    else:
        resumable = f"finished all {epochs} epochs; to train longer: {resume} --epochs {epochs * 2}"
    made = [e for e in submission_log.entries()
            if run_dir.resolve() in [Path(d) for d in (e.get("run_dir") or "").split(";") if d]]
    return {
        **info, "kind": "run", "run": run_dir.name, "run_dir": str(run_dir.resolve()), "model": model,
        "parameters": parameters, "train_config": cfg, "epoch": epoch, "epochs": epochs,
        "samples_seen": progress.samples_seen, "world": int(state.get("world", 1)),
        "step": progress.samples_seen // max(1, cfg.batch_size),
        "select": select, "best": {k: best.get(k) for k in ("epoch", "psnr", "psnr_y", "ssim", "score")},
        "bicubic": {k: (progress.bicubic or {}).get(k) for k in ("psnr", "score")},
        "final": None if summary is None else {
            "final_check_on": layout.final_check_on(summary),
            **{k: summary.get(k) for k in ("model", "bicubic", "gain_db", "worse_than_bicubic", "stopped", "best_epoch")}},
        "finished": finished,
        "split": {"train": len(split.get("train", [])), "val": len(split.get("val", []))},
        "hygiene": {"used": hygiene.get("used"), "left_out": sum(len(v) for v in hygiene.get("problems", {}).values())
                    if isinstance(hygiene.get("problems"), dict) else None,
                    "problems": {k: len(v) for k, v in (hygiene.get("problems") or {}).items()}},
        "seconds": _run_seconds(run_dir), "resumable": resumable, "weights": str(run_dir / layout.WEIGHTS)
        if (run_dir / layout.WEIGHTS).is_file() else "",
        "submissions": {"csvs": sum(e["event"] == "csv" for e in made),
                        "submitted": [e["message"] for e in made if e["event"] == "submitted"]},
    }


def _card(folder: Path):
    card = folder / "README.md"
    return card.read_text()[:2000] if card.is_file() else ""
