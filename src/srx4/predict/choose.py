"""Which weights a prediction runs: the one reading of `--weights` that predict.py,
super_resolve.py and evaluate.py share.

`--weights` is a list: run folders, .safetensors or .onnx files, or shipped names
(weights/<name>); several make an ensemble, their outputs averaged. Given none, the
rule is the same in every script:
  1. the run train.py finished last (logs/last_run.json), except on Kaggle where only
     a run finished in this session counts (a pointer carried over in an attached
     output is stale);
  2. else the shipped recommended weights (weights/srresnet-x4);
  3. else one line saying what to pass.

    predictor = load_predictor(config.weights, device)
    predictor.model, predictor.identity, predictor.name
"""
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from srx4.core import layout, paths
from srx4.core.io import file_sha256
from srx4.models.weights import WeightsError, resolve_weights
from srx4.predict.inference import Ensemble, prepare_model
from srx4.predict import openvino
from srx4.predict.onnx import OnnxModel, load_runnable

WEIGHTS_HELP = ("weights: a run folder, .safetensors or .onnx file, or a shipped name (srresnet-x4); several (--weights "
                "a --weights b): an ensemble, outputs averaged (default: the run train.py finished last, else the "
                "shipped weights)")


@dataclass
class Predictor:
    model: object        # nn.Module, OnnxModel or Ensemble: anything with .spec and .scale
    identity: dict       # what wrote a PNG folder (weights, sha256, model config): its manifest
    name: str            # a name for outputs: the run folder's (submissions/<name>/png), or the file's stem
    files: list          # the weights files

    def inference_form(self, fold_bn: bool = True, channels_last: bool = True):
        """The model as predictions run it: BatchNorm folded, channels-last (an ONNX session
        as it is; an ensemble member by member)."""
        if isinstance(self.model, Ensemble):
            return self.model.prepared(fold_bn, channels_last)
        if isinstance(self.model, (OnnxModel, openvino.OpenVinoModel)):
            return self.model
        return prepare_model(self.model, fold_bn, channels_last)


def bicubic_warning(model_psnr: float, bicubic_psnr: float, final_check_on: str) -> str:
    """The loud block printed when a model ends worse than plain bicubic upsampling
    (train.py's final check; predict.py repeats it for those weights)."""
    bar = "!" * 78
    return (f"{bar}\nWARNING: this model is WORSE than bicubic upsampling on {final_check_on}: "
            f"{model_psnr:.3f} dB vs {bicubic_psnr:.3f} dB ({model_psnr - bicubic_psnr:+.3f} dB).\n"
            f"Submitting it would score below the bicubic baseline. Train longer, lower --learning-rate, "
            f"or check the data.\n{bar}")


def choose_weights(given) -> tuple:
    """([weights files], why) by the rule above; `why` is empty when --weights named them."""
    if given:
        return [resolve_weights(w) for w in given], ""
    last, shipped = paths.last_run(), paths.recommended_weights()
    if last is not None:
        other = f"--weights {shipped.name} for the shipped weights" if shipped else "--weights to choose others"
        return [resolve_weights(last)], f"the run train.py finished last (logs/{layout.LAST_RUN}); {other}"
    if shipped is not None:
        return [resolve_weights(shipped)], f"no run of yours found: the shipped weights (see {shipped / 'CARD.md'})"
    raise WeightsError("no weights found: pass --weights (a run folder, .safetensors or .onnx), or train first: "
                       "python src/train.py")


def warn_if_worse_than_bicubic(weights: Path):
    """Repeat train.py's warning when its final check found these weights worse than bicubic."""
    try:
        report = json.loads((weights.parent / layout.SUMMARY).read_text())
    except (OSError, ValueError):
        return
    if report.get("worse_than_bicubic"):
        print(bicubic_warning(report["model"]["psnr"], report["bicubic"]["psnr"], layout.final_check_on(report)),
              file=sys.stderr)


def resolve_backend(backend: str, weights: Path, device) -> str:
    """auto: ONNX Runtime for a .onnx file, else torch. OpenVINO is offered, not chosen:
    whole process it measured level with torch (fp32 and bf16) and ONNX Runtime slower
    (benchmarks/bench_predict.py, RESULTS.md)."""
    if backend != "auto":
        return backend
    return "onnxruntime" if weights.suffix == ".onnx" else "torch"


def _load(weights: Path, device, backend: str):
    """(model, model config) of one weights file for the backend asked."""
    backend = resolve_backend(backend, weights, device)
    if backend != "openvino":
        return load_runnable(weights, device, backend)
    if torch.device(device).type != "cpu":
        raise WeightsError(f"{weights}: --backend openvino runs on the CPU: add --device cpu")
    model, config = load_runnable(weights, device, "torch")
    return openvino.OpenVinoModel(prepare_model(model.cpu(), fold_bn=True, channels_last=False), str(weights)), config


def _name(weights: Path) -> str:
    return weights.stem if weights.suffix == ".onnx" or weights.parent.name == "" else weights.parent.name


def load_predictor(given, device, backend: str = "auto") -> Predictor:
    """The model of the chosen weights (one, or an ensemble), in its training form, named
    and identified; prints one line saying which weights and why."""
    files, why = choose_weights(given)
    members, configs = [], []
    for weights in files:
        model, config = _load(weights, device, backend)
        members.append(model)
        configs.append(config)
        warn_if_worse_than_bicubic(weights)
    digests = [file_sha256(w)[:16] for w in files]
    if len(files) == 1:
        model = members[0]
        identity = {"weights": str(files[0].resolve()), "sha256": digests[0], **configs[0]}
        runtime = {OnnxModel: "onnxruntime", openvino.OpenVinoModel: "openvino"}.get(type(model))
        if runtime:          # kept out for torch: folders written before this key existed stay resumable
            identity["backend"] = runtime
        print(f"weights: {files[0]}" + (f"; {why}" if why else "")
              + (f"; ONNX Runtime ({', '.join(model.providers)})" if runtime == "onnxruntime" else "")
              + ("; OpenVINO on the CPU" if runtime == "openvino" else ""))
    else:
        try:
            model = Ensemble(members)
        except ValueError as err:
            raise WeightsError(f"{', '.join(map(str, files))}: {err}") from None
        identity = {"weights": ";".join(str(w.resolve()) for w in files), "sha256": ";".join(digests),
                    "ensemble": len(files), "scale": model.scale}
        print(f"weights: an ensemble of {len(files)}, outputs averaged: " + ", ".join(map(str, files)))
    return Predictor(model, identity, "+".join(_name(w) for w in files), files)
