"""ONNX export of a trained model, and an ONNX Runtime model that predict.py and
super_resolve run like a torch one (tiling, TTA, batching unchanged).

The exported graph is the inference form (BatchNorm folded) with the output clamped:
in `lr` and out `sr`, float32 RGB NCHW in [0, 1] (the repo's tensor convention),
batch, height and width dynamic. The model config (scale, receptive radius, ...)
travels inside the file as metadata (`srx4.model`), so a .onnx alone is enough.

    export_onnx(model, model_config, "model.onnx")
    model = OnnxModel("model.onnx")          # model(lr) -> sr, torch tensors
"""
import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from srx4.core.errors import UserError
from srx4.models.base import ModelSpec
from srx4.models.weights import WeightsError
from srx4.core.io import atomic_write_bytes

INSTALL = "pip install -r requirements-extras.txt"
OPSET = 17
META_KEY = "srx4.model"


class ExportError(UserError, RuntimeError):
    exit_code = 1
    """An export that cannot be made or does not match the torch model (one line)."""


class Clamped(torch.nn.Module):
    """The network with its output clamped to [0, 1], as written to PNG."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, lr):                           # (N, 3, H, W) in [0, 1]
        return self.model(lr).clamp(0, 1)            # (N, 3, sH, sW)


def export_onnx(model, model_config: dict, path, opset: int = OPSET) -> Path:
    """Write `path` atomically: the eval-mode `model` (pass the inference form) as ONNX
    with dynamic batch/height/width and the model config in its metadata."""
    try:
        import onnx
    except ImportError:
        raise ExportError(f"ONNX export needs the onnx package: {INSTALL}") from None
    example = torch.rand(1, 3, 24, 24)
    buffer = io.BytesIO()
    with warnings.catch_warnings():      # the TorchScript-based exporter says it is the older one
        warnings.simplefilter("ignore")
        torch.onnx.export(Clamped(model).eval().cpu(), (example,), buffer, input_names=["lr"], output_names=["sr"],
                          dynamic_axes={"lr": {0: "batch", 2: "height", 3: "width"},
                                        "sr": {0: "batch", 2: "sr_height", 3: "sr_width"}},
                          opset_version=opset, dynamo=False)
    graph = onnx.load_from_string(buffer.getvalue())
    meta = {**model_config, "receptive_radius": float(model.receptive_radius),
            "bytes_per_lr_pixel": int(model.spec.bytes_per_lr_pixel), "size_multiple": int(model.spec.size_multiple)}
    entry = graph.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    graph.producer_name = "srx4"
    onnx.checker.check_model(graph)
    atomic_write_bytes(path, graph.SerializeToString())
    return Path(path)


class OnnxModel:
    """An ONNX Runtime session that behaves as predict.py's models do: called on
    float (N, 3, H, W) tensors, it returns (N, 3, sH, sW) tensors on the same device;
    its `spec` (scale, receptive radius, memory, size multiple) comes from the metadata."""

    def __init__(self, path, device: torch.device = torch.device("cpu"), threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError:
            raise WeightsError(f"{path}: running ONNX models needs onnxruntime: {INSTALL}") from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:       # ONNX Runtime raises its own exception classes
            raise WeightsError(f"{path}: not a loadable ONNX model ({str(err).splitlines()[0][:160]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in meta:
            raise WeightsError(f"{path}: an ONNX model, but not one exported by src/export.py (no {META_KEY})")
        self.config = json.loads(meta[META_KEY])
        self.providers = self.session.get_providers()
        # where the session really runs: tiles are sized for that device's memory; fp32 only
        runs_on = "cuda" if "CUDAExecutionProvider" in self.providers else "cpu"
        self.spec = ModelSpec(int(self.config["scale"]), float(self.config["receptive_radius"]),
                              int(self.config.get("bytes_per_lr_pixel", int(self.config.get("channels", 64)) * 240)),
                              int(self.config.get("size_multiple", 1)), supports_half=False, supports_bfloat16=False,
                              runs_on=runs_on)
        self.scale, self.runs_on = self.spec.scale, runs_on
        if torch.device(device).type == "cuda" and runs_on == "cpu":
            print(f"warning: {Path(path).name}: this ONNX Runtime has no CUDA provider, so the model runs on the "
                  f"CPU although a GPU is here (tiles sized for host RAM; slow): pip install onnxruntime-gpu, "
                  f"or predict with the .safetensors weights (torch on the GPU)", file=sys.stderr, flush=True)

    def eval(self):
        return self

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        out = self.session.run(["sr"], {"lr": np.ascontiguousarray(lr.detach().float().cpu().numpy())})[0]
        return torch.from_numpy(out).to(lr.device)


def load_runnable(path, device=torch.device("cpu"), backend: str = "auto"):
    """(model, model_config) for prediction: an .onnx file through ONNX Runtime; torch
    weights (a run folder or .safetensors) in torch, or with backend "onnxruntime"
    exported to a temporary ONNX file first."""
    from srx4.models.weights import load_model, resolve_weights
    path = Path(path)
    if path.suffix == ".onnx":
        if backend == "torch":
            raise WeightsError(f"{path}: an ONNX file runs with --backend onnxruntime (or auto), not torch")
        model = OnnxModel(path, device)
        return model, model.config
    model, config = load_model(path, device=device)
    if backend != "onnxruntime":
        return model, config
    import tempfile
    from srx4.predict.inference import prepare_model
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = Path(folder) / "model.onnx"
        try:
            export_onnx(prepare_model(model.cpu(), fold_bn=True, channels_last=False), config, onnx_path)
        except ExportError as err:
            raise WeightsError(f"{resolve_weights(path)}: --backend onnxruntime: {err}") from None
        return OnnxModel(onnx_path, device), config


def grey_level_differences(a: np.ndarray, b: np.ndarray) -> dict:
    """uint8 images a, b -> {max, share_equal, share_within_1} of |a - b|."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {"max": int(diff.max()), "share_equal": float((diff == 0).mean()), "share_within_1": float((diff <= 1).mean())}
