"""OpenVINO, Intel's runtime for CPU inference, as a predict.py backend (--backend openvino).

The inference form of a torch model (BatchNorm folded, output clamped) is converted
in memory (no file) with batch, height and width dynamic, and compiled for the CPU
once per precision: fp32, or bf16 where torch would autocast to bf16 (a CPU with
avx512_bf16 / AMX). Called like predict.py's models, on float (N, 3, H, W) tensors in
[0, 1], it returns (N, 3, sH, sW) tensors; tiling, TTA, batching and the fp32 retry of
a non-finite output work unchanged (`super_resolve` switches precision through
torch.autocast, which this model reads).

Measured against the torch path in benchmarks/bench_predict.py (RESULTS.md): its fp32
forward is about 15% faster than torch's on a 2-core AMD EPYC, its bf16 level, and a
whole predict.py process level with torch either way (the conversion costs a few
seconds), so `--backend auto` stays torch. Needs `pip install -r requirements-extras.txt`.
"""
import warnings

import torch

from srx4.models.base import ModelSpec
from srx4.models.weights import WeightsError

INSTALL = "pip install -r requirements-extras.txt"


def available() -> bool:
    import importlib.util
    return importlib.util.find_spec("openvino") is not None


class OpenVinoModel:
    """`model` (its inference form, eval mode) compiled by OpenVINO for the CPU."""

    def __init__(self, model, name: str = "model"):
        try:
            import openvino as ov
        except ImportError:
            raise WeightsError(f"{name}: --backend openvino needs the openvino package: {INSTALL}") from None
        from srx4.predict.onnx import Clamped
        spec = model.spec
        with warnings.catch_warnings(), torch.no_grad():     # tracing warns about the model's Python branches
            warnings.simplefilter("ignore")
            self.graph = ov.convert_model(Clamped(model).eval().cpu(), example_input=torch.rand(1, 3, 24, 24),
                                          input=[(-1, 3, -1, -1)])
        self.core, self.compiled = ov.Core(), {}
        self.spec = ModelSpec(spec.scale, spec.receptive_radius, spec.bytes_per_lr_pixel, spec.size_multiple,
                              supports_half=False, supports_bfloat16=True, channels_last=False, runs_on="cpu")
        self.scale, self.runs_on, self.name = spec.scale, "cpu", name

    def eval(self):
        return self

    def _model(self, precision: str):
        if precision not in self.compiled:
            self.compiled[precision] = self.core.compile_model(self.graph, "CPU",
                                                               {"INFERENCE_PRECISION_HINT": precision})
        return self.compiled[precision]

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        x = lr.detach().float().cpu().contiguous().numpy()                    # (N, 3, H, W)
        out = self._model("bf16" if bf16 else "f32")(x)[0]                    # (N, 3, sH, sW)
        return torch.from_numpy(out.copy()).to(lr.device)
