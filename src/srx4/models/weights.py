"""Saving and loading weights files, atomically and safely.

- `save_weights(run_dir, model, model_config)` -> best.safetensors + model.json:
  enough to rebuild the model with no training config.
- `load_model(path)` rebuilds a model from a run folder, a .safetensors file
  (model.json beside it or its config inside), the name of shipped weights
  (weights/<name>/), or a foreign model file spandrel knows (.pth, ...);
  `expect=` refuses weights of another architecture or scale, saying which.
Every write goes to a temp file in the same folder, is flushed and renamed
(last.ckpt, the resumable checkpoint: srx4.runs.checkpoint).
"""
import json
from pathlib import Path

from safetensors.torch import load_file, save as safetensors_bytes

from srx4 import __version__
from srx4.core import layout
from srx4.core.errors import UserError
from srx4.core import paths
from srx4.core.io import atomic_write_bytes, write_json
from srx4.models import ForeignError, build_model, load_foreign
from srx4.models.foreign import FOREIGN_SUFFIXES

VERSION_KEY = "srx4_version"      # model.json and summary.json: the package version that wrote them


class WeightsError(UserError, ValueError):
    """Weights that cannot be used as asked; the message says why."""


def unwrap(model):
    """The plain module inside DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_weights(path, model, model_config: dict):
    """Write `path` (.safetensors) and model.json beside it."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    atomic_write_bytes(path, safetensors_bytes(state, metadata={"model": json.dumps(model_config)}))
    write_json(path.parent / layout.MODEL_CONFIG, {**model_config, VERSION_KEY: __version__})


def resolve_weights(path) -> Path:
    """A run folder -> its best.safetensors; a shipped name (srresnet-x4) -> that folder's;
    a file stays as it is."""
    path = Path(path)
    if not path.exists() and paths.shipped_weights(str(path)) is not None:
        path = paths.shipped_weights(str(path))
    if path.is_dir():
        path = path / layout.WEIGHTS
    if not path.is_file():
        names = paths.shipped_names()
        raise WeightsError(f"{path}: weights not found"
                           + (f" (shipped names: {', '.join(names)})" if names and len(path.parts) == 1 else ""))
    return path


def is_foreign(weights_path: Path) -> bool:
    """A file not written by this repo: a .pth & co, or a .safetensors with no model config."""
    if weights_path.suffix.lower() in FOREIGN_SUFFIXES:
        return True
    if (weights_path.parent / layout.MODEL_CONFIG).is_file():
        return False
    from safetensors import safe_open
    try:
        with safe_open(str(weights_path), "pt") as f:
            return "model" not in (f.metadata() or {})
    except Exception:
        return False          # unreadable: read_model_config says so


def read_model_config(weights_path: Path) -> dict:
    """The model's config (what builds it), without the srx4 version that wrote it."""
    config_path = weights_path.parent / layout.MODEL_CONFIG
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        config.pop(VERSION_KEY, None)
        return config
    from safetensors import safe_open
    with safe_open(str(weights_path), "pt") as f:
        meta = f.metadata() or {}
    if "model" not in meta:
        raise WeightsError(f"{weights_path}: no {layout.MODEL_CONFIG} beside it and no model config inside")
    return json.loads(meta["model"])


def load_model(path, expect: dict = None, device="cpu"):
    """Rebuild a model from weights. Returns (model in eval mode, model_config)."""
    weights_path = resolve_weights(path)
    foreign = is_foreign(weights_path)
    if foreign:
        try:
            model = load_foreign(weights_path)
        except ForeignError as err:
            raise WeightsError(str(err)) from None
        config = model.config()
    else:
        config = read_model_config(weights_path)
    for key, value in (expect or {}).items():
        if value is not None and key in config and config[key] != value:
            raise WeightsError(f"{weights_path}: weights are for {key}={config[key]!r}, not {value!r}")
    if not foreign:
        try:
            state = load_file(str(weights_path))
        except Exception as err:
            raise WeightsError(f"{weights_path}: unreadable weights ({err.__class__.__name__})") from None
        try:
            model = build_model(config, state)
        except (ForeignError, ValueError, TypeError) as err:
            raise WeightsError(f"{weights_path}: {err}") from None
        load_state(model, state, str(weights_path))
    return model.to(device).eval(), config


def load_state(model, state: dict, source: str):
    """load_state_dict with a one-line error instead of a key/shape traceback."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        detail = (f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected "
                  f"(e.g. {unexpected[:2]}), {len(wrong)} of another shape (e.g. {wrong[:2]})")
        raise WeightsError(f"{source}: weights do not fit {model.__class__.__name__}: {detail}")
    model.load_state_dict(state)


