"""ONNX export checked against torch, prediction through ONNX Runtime, the CPU bf16
choice and its numerics, and the bicubic residual as a convolution."""
import json
import re

import numpy as np
import pytest
import torch

from conftest import BENCHMARKS, need_module, run_script
from srx4.image.codec import read_image
from srx4.image.resize import BicubicUpscale, resize_tensor
from srx4.core.precision import for_inference
from srx4.core.system import cpu_flags_have_bf16
from srx4.models import SRCNN, SRResNet


def pngs(folder):
    return {p.name: read_image(p).astype(np.int16) for p in sorted(folder.glob("*.png"))}


def test_onnx_export_predicts_like_torch(learned, tmp_path):
    need_module("onnxruntime")
    need_module("onnx")
    work, run, test = learned
    done = run_script("export.py", "--weights", run, "--onnx", tmp_path / "m.onnx", work=work)
    assert re.search(r"checked on 19 images, ONNX Runtime vs torch: max [01] grey", done.stdout), done.stdout
    import onnx
    graph = onnx.load(str(tmp_path / "m.onnx"))
    meta = json.loads({p.key: p.value for p in graph.metadata_props}["srx4.model"])
    assert meta["scale"] == 4 and meta["num_blocks"] == 2
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    # predict.py through ONNX Runtime (the .onnx file, and torch weights with --backend) against torch
    for name, args in (("torch", ["--weights", run, "--no-amp"]), ("onnx", ["--weights", tmp_path / "m.onnx"]),
                       ("backend", ["--weights", run, "--backend", "onnxruntime"])):
        out = run_script("predict.py", *args, "--input", test / "lr", "--output", tmp_path / name, work=work)
        assert ("ONNX Runtime" in out.stdout) == (name != "torch")
    reference = pngs(tmp_path / "torch")
    for name in ("onnx", "backend"):
        other = pngs(tmp_path / name)
        assert other.keys() == reference.keys()
        assert max(np.abs(other[k] - reference[k]).max() for k in reference) <= 1


def test_export_check_skips_unreadable_images_and_bad_weights_are_one_line(learned, tmp_path):
    need_module("onnxruntime")
    need_module("onnx")
    work, run, test = learned
    check = tmp_path / "check"
    check.mkdir()
    (check / "text.png").write_text("not a png")
    (check / "good.png").write_bytes((test / "lr" / "zebra.png").read_bytes())
    done = run_script("export.py", "--weights", run, "--onnx", tmp_path / "m.onnx", "--check-on", check, work=work)
    assert "left out (unreadable): text.png" in done.stdout and "checked on 1 images" in done.stdout
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "best.safetensors").write_bytes(b"\x00" * 100)
    (tmp_path / "bad" / "model.json").write_text((run / "model.json").read_text())
    done = run_script("export.py", "--weights", tmp_path / "bad", "--onnx", tmp_path / "x.onnx", work=work,
                      check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "unreadable weights" in done.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_without_onnxruntime_the_backend_is_one_line(learned, tmp_path):
    work, run, test = learned
    hidden = tmp_path / "hide" / "onnxruntime"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('No module named onnxruntime')\n")
    done = run_script("predict.py", "--weights", run, "--backend", "onnxruntime", "--input", test / "lr",
                      "--output", tmp_path / "o", work=work, env_extra={"PYTHONPATH": str(tmp_path / "hide")},
                      check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith("pip install -r requirements-extras.txt")


def test_cpu_bf16_is_chosen_by_what_the_cpu_has(monkeypatch):
    assert cpu_flags_have_bf16("flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile\n")
    assert cpu_flags_have_bf16("flags : fpu amx_bf16\n")
    assert not cpu_flags_have_bf16("flags : fpu sse avx2 avx512f avx512bw\n")
    from srx4.core import system as infer
    cpu = torch.device("cpu")
    for forced, expected in (("1", torch.bfloat16), ("0", None)):
        monkeypatch.setenv("SRX4_CPU_BF16", forced)
        infer.cpu_has_bf16.cache_clear()
        assert for_inference(cpu, True, "auto") == expected
    assert for_inference(cpu, True, "bf16") == torch.bfloat16      # asked for: used even where it is emulated
    infer.cpu_has_bf16.cache_clear()


def test_cpu_training_takes_bf16_channels_last_where_native_and_measured(monkeypatch):
    """Training on a CPU: bf16 autocast in channels-last for the models measured faster so,
    only where the CPU computes bf16 natively; everything else as before (fp32, NCHW)."""
    from srx4.core import system
    from srx4.core.precision import CPU_BF16_TRAINING, for_training
    from srx4.models.base import ModelSpec
    cpu = torch.device("cpu")

    def decided(name, amp=True, amp_dtype="auto", channels_last=True, spec=None):
        p = for_training(cpu, amp, amp_dtype, channels_last, spec, name)
        return p.train, p.channels_last, p.validate, p.why
    try:
        monkeypatch.setenv("SRX4_CPU_BF16", "0")
        system.cpu_has_bf16.cache_clear()
        assert decided("srresnet")[:3] == ("fp32", False, "fp32")
        assert decided("srresnet", amp_dtype="bf16")[:3] == ("bf16", False, "fp32")
        monkeypatch.setenv("SRX4_CPU_BF16", "1")
        system.cpu_has_bf16.cache_clear()
        for name in CPU_BF16_TRAINING:
            dtype, channels_last, validate, why = decided(name)
            assert (dtype, channels_last, validate) == ("bf16", True, "fp32") and "faster than fp32" in why
        assert decided("srcnn")[:2] == ("fp32", False)          # not measured
        assert decided("srresnet", amp=False)[:2] == ("fp32", False)
        assert decided("span", channels_last=False)[:2] == ("bf16", False)
        no_bf16 = ModelSpec(4, 1.0, 1, supports_bfloat16=False)                  # a model that says no bf16
        assert decided("srresnet", spec=no_bf16)[:2] == ("fp32", False) and "does not run in bf16" in decided(
            "srresnet", spec=no_bf16)[3]
    finally:
        system.cpu_has_bf16.cache_clear()


def test_cpu_bf16_prediction_is_score_neutral(learned, tmp_path):
    """The bf16 CPU path against fp32 on real held-out images: >= 99.9% of values within
    1 grey level, none beyond 2, PSNR within 0.01 dB (the bar for choosing it by default)."""
    work, run, test = learned
    run_script("predict.py", "--weights", run, "--no-amp", "--input", BENCHMARKS / "Set14" / "LR_x4",
               "--output", tmp_path / "fp32", work=work)
    run_script("predict.py", "--weights", run, "--amp-dtype", "bf16", "--input", BENCHMARKS / "Set14" / "LR_x4",
               "--output", tmp_path / "bf16", work=work)
    fp32, bf16 = pngs(tmp_path / "fp32"), pngs(tmp_path / "bf16")
    diffs = np.concatenate([np.abs(fp32[k] - bf16[k]).ravel() for k in fp32])
    assert diffs.max() <= 2 and (diffs <= 1).mean() >= 0.999
    from srx4.image.metrics import psnr
    hr = {k: torch.from_numpy(read_image(BENCHMARKS / "Set14" / "HR" / k)).float() / 255 for k in fp32}

    def mean_psnr(outputs):
        return np.mean([psnr(torch.from_numpy(v).float() / 255, hr[k][..., :3] if hr[k].ndim == 3 else
                             hr[k][..., None].expand(-1, -1, 3)).item() for k, v in outputs.items()])
    assert abs(mean_psnr(fp32) - mean_psnr(bf16)) < 0.01
    # the bicubic baseline never runs in bf16: under --amp-dtype bf16 it is still the exact MATLAB line
    from srx4.image.scoring import bicubic_prediction
    run_script("predict.py", "--model", "bicubic", "--amp-dtype", "bf16", "--input", BENCHMARKS / "Set5" / "LR_x4",
               "--output", tmp_path / "bicubic", work=work)
    lr = read_image(BENCHMARKS / "Set5" / "LR_x4" / "butterfly.png")
    np.testing.assert_array_equal(read_image(tmp_path / "bicubic" / "butterfly.png"), bicubic_prediction(lr, 4))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_residual_convolution_is_the_matlab_resize(scale):
    x = torch.rand(2, 3, 13, 17, dtype=torch.float64)
    layer = BicubicUpscale(scale).double()
    assert torch.allclose(layer(x), resize_tensor(x, scale), atol=1e-7)
    assert torch.allclose(BicubicUpscale(scale)(x.float()), resize_tensor(x, scale).float(), atol=1e-6)
    for model in (SRResNet(scale, 1, 8, bicubic_residual=True), SRCNN(scale)):    # weights files unchanged
        assert not any("bicubic" in k for k in model.state_dict())


def test_openvino_backend_predicts_like_torch_and_is_named_in_the_manifest(learned, tmp_path):
    """predict.py --backend openvino (the folded model converted in memory, compiled for the
    CPU): the same files within 1 grey level of torch's, fp32 with --no-amp as with torch;
    its folder's manifest names the backend, so torch will not mix its PNGs in silently."""
    need_module("openvino")
    work, run, test = learned
    for name, args in (("torch", ["--no-amp"]), ("openvino", ["--no-amp", "--backend", "openvino"]),
                       ("openvino_auto", ["--backend", "openvino"])):
        out = run_script("predict.py", "--weights", run, *args, "--input", test / "lr", "--output", tmp_path / name,
                         "--device", "cpu", work=work)
        assert ("OpenVINO on the CPU" in out.stdout) == name.startswith("openvino")
    reference = pngs(tmp_path / "torch")
    for name in ("openvino", "openvino_auto"):
        got = pngs(tmp_path / name)
        assert got.keys() == reference.keys()
        assert max(int(np.abs(got[k] - reference[k]).max()) for k in got) <= 1, name
    assert json.loads((tmp_path / "openvino" / ".srx4-weights.json").read_text())["backend"] == "openvino"
    mixed = run_script("predict.py", "--weights", run, "--input", test / "lr", "--output", tmp_path / "openvino",
                       "--device", "cpu", work=work, check=False)
    assert mixed.returncode == 2 and "written by other weights" in mixed.stderr
