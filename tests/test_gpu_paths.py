"""The CUDA-only branches exercised on the CPU: DDP ranks under gloo, fp16 under CPU
autocast with GradScaler("cpu"), the memory cap and out-of-memory tiles, non-finite
outputs, and the fp16 rehearsal of a T4x2 run (2 ranks, EMA, gradient accumulation)."""
import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import LEARNING, REPO, TINY, make_pairs, need_module, run_ranks, run_script
from srx4.core import gpu_memory
from srx4.predict import inference as infer
from srx4.image import metrics
from srx4.models import build_model
from srx4.core.io import file_sha256
from srx4.models.weights import load_model, save_weights
from srx4.train.step import BatchNormGuard, train_step
from srx4.predict.inference import super_resolve


def two_ranks(port, script, *args, tmp_path, timeout=300):
    """Two gloo ranks of `script` (conftest.run_ranks: torchrun's environment, warm processes)."""
    return run_ranks(script, *args, work=tmp_path, port=port, timeout=timeout)


# 1 + 3: one clock and one run folder for all ranks -----------------------------------------------
@pytest.mark.slow
def test_ranks_held_apart_under_a_time_limit_share_the_folder_and_end_bit_identical(tmp_path, free_port):
    """Rank 1 leaves init 1.5 s after rank 0: a run name formatted from each rank's clock
    names two folders, and a time share read from each rank's clock gives each rank its own
    learning rate at every step (DDP averages gradients, never re-syncs weights)."""
    data = make_pairs(tmp_path / "data", count=8)
    two_ranks(free_port, REPO / "tests/helpers/delayed_rank.py", "1.5", "--data", data, *TINY,
             "--epochs", "500", "--patches-per-image", "8", "--time-limit", "0.0025", "--val-fraction", "0.25",
             "--learning-rate", "1e-3", "--cache-dir", tmp_path / "cache", tmp_path=tmp_path)
    (run,) = [p for p in (tmp_path / "logs").iterdir() if (p / "summary.json").is_file()]
    summary = json.loads((run / "summary.json").read_text())
    assert "--time-limit" in summary["stopped"] and summary["epochs_done"] < 500   # the clock did decide
    ranks = summary["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert {r["run_dir"] for r in ranks} == {str(run)}                             # one folder
    assert {r["scored"] for r in ranks} == {file_sha256(run / "best.safetensors")}  # both scored the best weights
    assert ranks[0]["weights_fingerprint"] == ranks[1]["weights_fingerprint"]      # bit-identical weights
    assert "disagree" not in (run / "train.log").read_text()


# 2: the fp16 refusal of a foreign model is asked of the model, not its DDP wrapper ----------------
def test_a_model_that_cannot_run_fp16_trains_fp32_under_ddp(tmp_path, free_port):
    need_module("spandrel")
    from spandrel.architectures.SwinIR import SwinIR
    torch.manual_seed(0)
    net = SwinIR(upscale=4, in_chans=3, img_size=32, window_size=8, img_range=1.0, depths=[2], embed_dim=24,
                 num_heads=[2], mlp_ratio=2, upsampler="pixelshuffledirect", resi_connection="1conv")
    swinir = tmp_path / "4x_tiny_SwinIR.pth"
    torch.save({"params": net.state_dict()}, swinir)
    data = make_pairs(tmp_path / "data", count=6, hr_side=64)
    two_ranks(free_port, REPO / "src/train.py", "--init-weights", swinir, "--data", data, "--run-name", "swin",
             "--epochs", "1", "--batch-size", "2", "--patch-size", "16", "--patches-per-image", "1",
             "--device", "cpu", "--threads", "1", "--sample-every", "0", "--bn-refresh", "0",
             "--amp-dtype", "fp16", "--cache-dir", tmp_path / "cache", tmp_path=tmp_path)
    log = (tmp_path / "logs/swin/train.log").read_text()
    assert "precision: train fp32; validate fp32" in log and "the model does not run in fp16" in log
    assert "GradScaler" not in log


# 4: fp16 steps the GradScaler skips --------------------------------------------------------------
def test_an_overflowing_fp16_step_is_skipped_and_leaves_no_trace():
    """CPU fp16 autocast with a GradScaler at an absurd scale: the gradients overflow; the
    step is reported skipped, the scale drops, the weights, optimizer and BatchNorm
    statistics are as before."""
    torch.manual_seed(0)
    model = build_model({"name": "srresnet", "scale": 4, "num_blocks": 1, "channels": 8}).train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)
    guard = BatchNormGuard(model)
    lr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32)
    weights = [p.detach().clone() for p in model.parameters()]
    stats = [b.clone() for b in guard.live]
    assert stats, "SRResNet has BatchNorm statistics to guard"
    step = train_step(model, optimizer, scaler, lr, hr, "l1", torch.float16, share=(1.0, 2.5), guard=guard)
    assert step.loss is None and step.why == "gradients" and step.shared == [1.0, 2.5]
    assert scaler.get_scale() == 2.0**99
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert not optimizer.state                                     # Adam never stepped
    assert all(torch.equal(a, b) for a, b in zip(stats, guard.live))
    # a sane scale: the step is taken, and the statistics move on
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    step = train_step(model, optimizer, scaler, lr, hr, "l1", torch.float16, guard=guard)
    assert step.loss is not None and step.why == "" and torch.isfinite(torch.tensor(step.loss))
    assert not all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(stats, guard.live))


def test_skipped_fp16_steps_are_counted_keep_the_average_still_and_stop_a_run(tmp_path, pairs_dir):
    common = ["--data", pairs_dir, *TINY, "--amp-dtype", "fp16", "--patches-per-image", "4", "--ema", "0.9"]
    run_script("train.py", *common, "--epochs", "3", "--grad-scale-init", "1e9", "--max-bad-steps", "100",
               "--run", "s", work=tmp_path)
    run = tmp_path / "logs/s"
    with open(run / "metrics.csv") as f:
        skipped = sum(int(r["skipped_steps"]) for r in csv.DictReader(f))
    ckpt = torch.load(run / "last.ckpt", weights_only=True)
    steps = ckpt["samples_seen"] // 4
    assert 0 < skipped < steps
    assert ckpt["skipped_steps"] == skipped == json.loads((run / "summary.json").read_text())["skipped_steps"]
    assert ckpt["ema"]["updates"] == steps - skipped                 # the average moved only on applied steps
    assert ckpt["scaler"]["scale"] < 1e9
    assert "fp16 GradScaler:" in (run / "train.log").read_text()
    # a run whose fp16 gradients never come back is stopped, not trained for hours
    done = run_script("train.py", *common, "--epochs", "3", "--grad-scale-init", "1e30", "--max-bad-steps", "3",
                      "--run", "never", work=tmp_path, check=False)
    assert done.returncode == 2
    assert "3 steps in a row skipped (non-finite gradients in fp16" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# 5: memory: the cap, and a tile size that worked -------------------------------------------------
def test_the_memory_budget_keeps_within_the_cap():
    gib = 2**30
    assert gpu_memory.budget(free=120 * gib, cap=0, reserved=0, allocated=0) == 120 * gib   # no cap: the card
    assert gpu_memory.budget(free=120 * gib, cap=14 * gib, reserved=4 * gib, allocated=4 * gib) == 10 * gib
    assert gpu_memory.budget(free=2 * gib, cap=14 * gib, reserved=4 * gib, allocated=4 * gib) == 2 * gib  # card fuller
    assert gpu_memory.budget(free=120 * gib, cap=14 * gib, reserved=15 * gib, allocated=14 * gib) == 0
    # blocks the allocator keeps cached after a step are this process's to reuse: under a T4's cap
    # with 12 GiB cached but 2 GiB in use, 12 GiB are there for validation tiles, not the card's 0.5
    assert gpu_memory.budget(free=gib // 2, cap=14 * gib, reserved=12 * gib, allocated=2 * gib) == 10.5 * gib
    assert gpu_memory.budget(free=gib // 2, cap=0, reserved=12 * gib, allocated=2 * gib) == 10.5 * gib
    assert gpu_memory.cap_bytes(torch.device("cuda:3")) == 0                          # none set
    assert gpu_memory.device_index(torch.device("cuda:1")) == 1      # --device cuda:1: GPU 1's cap, not LOCAL_RANK's


class OutOfMemoryAbove(torch.nn.Module):
    """A real model that raises CUDA's out-of-memory error for inputs wider than `side`,
    as a GPU would for a tile too big for its memory; counts the attempts."""

    def __init__(self, model, side):
        super().__init__()
        self.model, self.side, self.calls = model, side, 0
        self.spec = model.spec

    def forward(self, x):
        self.calls += 1
        if max(x.shape[-2:]) > self.side:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (test)")
        return self.model(x)


def test_out_of_memory_halves_the_tile_once_and_remembers_it():
    torch.manual_seed(0)
    model = build_model({"name": "srresnet", "scale": 4, "num_blocks": 1, "channels": 8}).eval()
    lr = torch.rand(1, 3, 96, 96)
    whole = super_resolve(model, lr, tile=0)
    flaky = OutOfMemoryAbove(model, side=80)          # the whole 96 x 96 image is "too big"; tiles of 48 are not
    infer._tiles_that_fit.clear()
    out = super_resolve(flaky, lr, tile=0)
    assert torch.allclose(out, whole, atol=1e-5)
    first = flaky.calls
    assert first > 1 and infer._tiles_that_fit                     # failed, then fitted and remembered
    flaky.calls = 0
    again = super_resolve(flaky, lr)                               # automatic size: starts at what fitted
    assert torch.allclose(again, whole, atol=1e-5) and flaky.calls == first - 1   # no failed attempt this time
    infer._tiles_that_fit.clear()


# 6: non-finite outputs never become pixels -------------------------------------------------------
def test_predict_refuses_a_non_finite_output_naming_the_image(learned, tmp_path):
    work, run, test = learned
    model, config = load_model(run)
    with torch.no_grad():
        next(p for name, p in model.named_parameters() if name.endswith("bias")).fill_(float("nan"))
    save_weights(tmp_path / "broken.safetensors", model, config)
    done = run_script("predict.py", "--weights", tmp_path / "broken.safetensors", "--input", test / "lr",
                      "--output", tmp_path / "sr", work=work, check=False)
    assert done.returncode == 1
    names = sorted(p.name for p in (test / "lr").iterdir())
    for name in names:
        assert f"error: {name}: the model's output has NaN or inf values: not written" in done.stderr
    assert not list((tmp_path / "sr").glob("*.png"))


# 7: small ones -----------------------------------------------------------------------------------
def test_luma_weights_are_made_once_per_dtype_and_device():
    x = torch.rand(1, 3, 4, 4)
    metrics.rgb_to_y(x)
    before = metrics._luma_weights.cache_info()
    y = metrics.rgb_to_y(x)
    after = metrics._luma_weights.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses
    expected = (65.481 * x[:, 0] + 128.553 * x[:, 1] + 24.966 * x[:, 2] + 16) / 255
    assert torch.allclose(y[:, 0], expected, atol=1e-6)


def test_onnx_runtime_without_a_cuda_provider_says_so_and_sizes_for_the_host(learned, tmp_path):
    need_module("onnxruntime")
    import onnxruntime
    work, run, test = learned
    run_script("export.py", "--weights", run, "--onnx", tmp_path / "m.onnx", "--check-on", test / "lr", work=work)
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this ONNX Runtime has the CUDA provider")
    done = subprocess.run([sys.executable, "-c", (
        "import torch; from srx4.predict.onnx import OnnxModel; "
        f"m = OnnxModel({str(tmp_path / 'm.onnx')!r}, torch.device('cuda')); print(m.runs_on)")],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "cpu"
    assert "no CUDA provider" in done.stderr and "tiles sized for host RAM" in done.stderr


# the fp16 rehearsal: a T4x2 run's step code on the CPU -------------------------------------------
@pytest.mark.slow
def test_fp16_rehearsal_two_ranks_ema_grad_accum_beats_bicubic(tmp_path, free_port):
    """--device cpu --amp-dtype fp16 runs the step code of a T4: CPU fp16 autocast and
    GradScaler("cpu"), here under 2 gloo ranks with EMA and --grad-accum 2. (SPAN: CPU fp16
    convolutions are emulated, and SPAN's small kernels are the fastest of them.)"""
    data = make_pairs(tmp_path / "data" / "train", count=20, hr_side=128)
    flags = dict(zip(LEARNING[::2], LEARNING[1::2]))
    flags.update({"--batch-size": "4", "--epochs": "6", "--learning-rate": "3e-3", "--threads": "1"})
    two_ranks(free_port, REPO / "src/train.py", "--data", data, "--model", "span", *[a for kv in flags.items()
             for a in kv], "--warmup-steps", "5", "--amp-dtype", "fp16", "--ema", "0.9", "--grad-accum", "2",
             "--run-name", "t4", "--cache-dir", tmp_path / "cache", tmp_path=tmp_path)
    run = tmp_path / "logs/t4"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_check_on"] == "validation" and summary["gain_db"] > 0.2    # held-out crops, over bicubic
    assert not summary["worse_than_bicubic"]
    model, _ = load_model(run / "best.safetensors")
    assert all(torch.isfinite(p).all() for p in model.state_dict().values())
    log = (run / "train.log").read_text()
    assert "precision: train fp16 with a GradScaler; validate fp16; CPU" in log
    assert log.count("fp16 GradScaler:") == 6 and "x 2 processes" in log
    fingerprints = {r["weights_fingerprint"] for r in summary["ranks"]}
    assert len(fingerprints) == 1


# the command a GPU session runs ------------------------------------------------------------------
@pytest.mark.slow
def test_gpu_check_dry_run_starts_every_section(tmp_path):
    """benchmarks/gpu_check.py --device cpu --dry-run: each section runs its real commands
    (train.py in fp16 / bf16 / compile modes, torchrun DDP, predict.py -> CSV, the precision
    comparison) at tiny sizes; nothing is appended to RESULTS.md by a dry run."""
    before = (REPO / "benchmarks/RESULTS.md").read_bytes()
    done = run_script(REPO / "benchmarks/gpu_check.py", "--device", "cpu", "--dry-run", "--work", tmp_path, cwd=REPO,
                      check=False, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = {r["section"]: r for r in report["results"]}
    assert list(rows) == ["t4-fp16", "bf16", "sized", "compile", "cuda-graphs", "ddp", "predict", "small-crops",
                          "precision", "ops"]
    assert all(r["status"] == "ok" for r in rows.values()), rows
    assert rows["t4-fp16"]["figures"]["samples/s"] > 0 and "GradScaler" in rows["t4-fp16"]["figures"]
    assert rows["ddp"]["figures"]["ranks identical"] is True
    assert rows["predict"]["figures"]["frames"] == 4 and (tmp_path / "submission.csv").is_file()
    crops = rows["small-crops"]["figures"]
    assert crops["one at a time img/s"] > 0 and crops["batched img/s"] > 0 and crops["max diff (levels)"] <= 1
    assert float(rows["precision"]["figures"]["bicubic layer fp32 vs f64"]) < 1e-5
    ops = rows["ops"]["figures"]
    assert ops["EMA ops"] <= 5 < ops["EMA ops old"] and ops["step ops bf16 fused"] <= 750 < ops["step ops old"]
    assert rows["sized"]["figures"]["batch x patch"] == "16 x 8"          # a CPU: nothing sized
    assert "| t4-fp16 | ok |" in done.stdout and "for the session plan: T4 rehearsal" in done.stdout
    assert (REPO / "benchmarks/RESULTS.md").read_bytes() == before


def test_mfu_is_per_gpu():
    """Two ranks' samples are shared between two GPUs: the same total rate on two GPUs is half
    the utilisation of one (gpu_check once divided both ranks' samples by one GPU's peak)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks/gpu_check.py")
    sys.path.insert(0, str(REPO / "benchmarks"))
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    one = gpu_check.mfu(1000, 1, 24, 65)
    assert gpu_check.mfu(1000, 2, 24, 65) == pytest.approx(one / 2)
    assert one == pytest.approx(1000 * 24 * 24 * gpu_check.MACS_PER_LR_PIXEL * 6 / 65e12)


# fp16 validation: the fp32 retry, and NaN said, not clamped ---------------------------------------
class OverflowsInFp16(torch.nn.Module):
    """x4 nearest of a 1x1 conv pair that multiplies by 3e4 then divides: fp32 gives the input
    back; under fp16 autocast a bright image's 3-channel sum x 3e4 passes fp16's 65504 and
    comes out inf, a dark one stays finite. `broken` makes every output NaN (broken weights)."""

    def __init__(self, broken=False):
        super().__init__()
        from srx4.models.base import ModelSpec
        self.up, self.down = torch.nn.Conv2d(3, 3, 1, bias=False), torch.nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.up.weight.fill_(3e4)
            self.down.weight.copy_(torch.eye(3).view(3, 3, 1, 1) / 9e4)
        self.broken, self.spec, self.scale = broken, ModelSpec(4, 1.0, 64), 4

    def forward(self, x):
        y = self.down(self.up(x)) + (float("nan") if self.broken else 0.0)
        return torch.nn.functional.interpolate(y.float(), scale_factor=4, mode="nearest")


class InMemory:
    """Whole images as validate() reads them: (name, lr, hr) uint8 CHW; real photo crops."""

    def __init__(self, pairs):
        self.pairs = pairs

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        return self.pairs[i]

    def lr_size(self, i):
        return tuple(self.pairs[i][1].shape[1:]) + (3,)


def test_fp16_validation_retries_in_fp32_and_says_nan(capfd):
    from skimage import data as photos
    from srx4.train.validate import validate
    hr = torch.from_numpy(photos.astronaut()[:64, :64].copy()).permute(2, 0, 1)               # (3, 64, 64)
    bright = (hr.float() * 0.2 + 200).clamp(0, 255).byte()
    dark = (hr.float() * 0.1).byte()
    pairs = [(f"{k}.png", img[:, ::4, ::4].contiguous(), img) for k, img in enumerate((bright, dark))]
    data = InMemory(pairs)
    fp32 = validate(OverflowsInFp16(), data, "cpu", 4, amp=False)
    fp16 = validate(OverflowsInFp16(), data, "cpu", 4, amp=True, amp_dtype=torch.float16)
    err = capfd.readouterr().err
    assert "0.png: the output was not finite in reduced precision; predicted again in fp32" in err
    assert "1.png" not in err                                         # the dark image needed no retry
    assert abs(fp16.psnr - fp32.psnr) < 0.05 and fp16.psnr == fp16.psnr     # finite, as fp32's
    broken = validate(OverflowsInFp16(broken=True), data, "cpu", 4, amp=True, amp_dtype=torch.float16)
    err = capfd.readouterr().err
    assert broken.psnr != broken.psnr                                  # NaN: never clamped into pixels
    assert err.count("image(s) not finite even in fp32: this validation's figures are NaN") == 2   # a batch each


# compile and CUDA graphs: static shapes, or one line -------------------------------------------------
def test_uneven_micro_batches_recompile_so_compile_refuses_them(tmp_path):
    """--batch-size 16 --grad-accum 3 splits 6, 6, 4: a compiled model sees a second shape and
    compiles again (dynamo's counter, eager backend, on a CPU); so --compile and --cuda-graphs
    take only a --grad-accum that divides the batch, and --cuda-graphs no streamed data."""
    import torch._dynamo
    from srx4.models import SRResNet
    from srx4.train.config import TrainConfig
    torch._dynamo.reset()
    model = torch.compile(SRResNet(4, 1, 8), backend="eager", dynamic=False)
    frames = torch._dynamo.utils.counters["stats"]
    before = frames["unique_graphs"]
    for part in torch.rand(16, 3, 8, 8).chunk(3):                       # 6, 6, 4
        model(part)
    assert frames["unique_graphs"] - before == 2                        # the 4 compiled a second graph
    torch._dynamo.reset()
    assert ("grad_accum" in dict(TrainConfig(compile=True, batch_size=16, grad_accum=3).problems()))
    assert not TrainConfig(compile=True, batch_size=16, grad_accum=4).problems()
    assert not TrainConfig(batch_size=16, grad_accum=3).problems()       # eager: uneven is fine
    assert "cuda_graphs" in dict(TrainConfig(cuda_graphs=True, loading="stream").problems())
    assert not TrainConfig(compile=True, batch_size=16, grad_accum=3, device="cpu").problems()   # idle there
    done = run_script("train.py", "--cuda-graphs", "--batch-size", "16", "--grad-accum", "3", work=tmp_path,
                      check=False)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: --grad-accum = 3: must divide --batch-size (16) with --compile or --cuda-graphs: uneven "
        "micro-batches would recompile the model"]


# sized for the card -----------------------------------------------------------------------------------
def test_the_step_is_sized_from_the_model_spec_and_the_free_memory():
    """On a GPU, batch and patch not given come from SRResNet-16's ModelSpec and the memory:
    a T4's 14 GiB gives batch 32 of 48 px, an H100's 79 GiB batch 256; the learning rate
    follows by sqrt(batch / 16) when not given. A given value stays; a CPU changes nothing."""
    from srx4.models import SRResNet
    from srx4.train.config import TrainConfig
    from srx4.train.start import gpu_step_size, size_for_the_card
    per_pixel = SRResNet().spec.bytes_per_lr_pixel
    gib = 2**30
    t4 = gpu_step_size(per_pixel, 14 * gib, None, None, None)
    h100 = gpu_step_size(per_pixel, 79 * gib, None, None, None)
    assert t4[:2] == (32, 48) and h100[:2] == (256, 48)
    assert t4[2] == pytest.approx(1e-4 * 2**0.5) and h100[2] == pytest.approx(4e-4)
    assert "14.0 GiB free" in t4[3] and "sqrt(32 / 16)" in t4[3]
    assert gpu_step_size(per_pixel, 79 * gib, 64, None, 1e-4)[:3] == (64, 48, 1e-4)      # given: kept
    assert gpu_step_size(per_pixel, gib // 8, None, None, None)[0] == 1                   # little room: 1
    config = TrainConfig()
    assert size_for_the_card(config, {}, torch.device("cpu"), SRResNet().spec) == ""
    assert (config.batch_size, config.patch_size, config.learning_rate) == (16, 24, 1e-4)   # a CPU: unchanged


# the smaller GPU defects, each on a CPU ------------------------------------------------------------------
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402


class CountOps(TorchDispatchMode):
    """Every ATen op dispatched inside, with its output dtypes."""

    def __init__(self):
        super().__init__()
        self.ops, self.dtypes = [], set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.append(str(func.overloadpacket))
        for t in (out if isinstance(out, (list, tuple)) else [out]):
            if isinstance(t, torch.Tensor):
                self.dtypes.add(t.dtype)
        return out


def test_device_crops_build_no_tensor_from_host_data():
    """FlatImages.crops runs every step on the GPU-held path: it once built its channel-order
    table from a Python list at each call (a blocking host-to-device copy on a GPU)."""
    import numpy as np
    from srx4.data.device_patches import FlatImages
    images = FlatImages([np.zeros((16, 16, 3), np.uint8) + k for k in range(2)], torch.device("cpu"))
    where = torch.tensor([[0, 1, 2, 1, 0, 1, 0, 3], [1, 0, 0, 0, 1, 0, 1, 5]])
    with CountOps() as counted:
        images.crops(where, 8, colour=True)
        images.crops(where, 8, colour=False)
    assert "aten.lift_fresh" not in counted.ops        # what torch.as_tensor(a Python list) dispatches


def test_weight_average_update_is_two_foreach_ops_and_the_same_average():
    import copy
    from srx4.models import SRResNet
    from srx4.train.ema import WeightAverage
    torch.manual_seed(0)
    model = SRResNet()
    average = WeightAverage(model, 0.999)
    reference = copy.deepcopy(average.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        for b in model.buffers():
            b.add_(1)
    with CountOps() as counted:
        average.update(model)
    assert len(counted.ops) <= 5, counted.ops                    # was 100 copy_ and a lerp for SRResNet-16
    with torch.no_grad():                                        # the loop it replaced, on the copy
        torch._foreach_lerp_(list(reference.parameters()), list(model.parameters()), 1 - 0.1)
        for mine, theirs in zip(reference.buffers(), model.buffers()):
            mine.copy_(theirs)
    assert all(torch.equal(a, b) for a, b in zip(average.model.state_dict().values(),
                                                  reference.state_dict().values()))


def test_the_gpu_form_of_the_bicubic_residual_is_fp32_and_exact():
    """On a GPU in fp32 the bicubic layer runs two fp32 matmuls (no TF32, no float64: a T4 runs
    float64 at 1/32 rate); here that form, run on a CPU, dispatches no float64 op and matches
    MATLAB's resize in float64 to fp32 rounding."""
    from srx4.image.resize import _upscale_axis, resize_tensor
    x = torch.rand(2, 3, 20, 28)
    with CountOps() as counted:
        out = _upscale_axis(_upscale_axis(x, -2, 4), -1, 4)
    assert torch.float64 not in counted.dtypes
    assert (out.double() - resize_tensor(x.double(), 4)).abs().max() < 1e-6


def test_without_validation_non_finite_weights_are_never_the_best(tmp_path, pairs_dir, monkeypatch):
    """--val-fraction 0 makes every epoch 'best': weights gone to inf were written to
    best.safetensors before the finiteness check stopped the run. Now nothing is written.
    (A real Trainer on real pairs, its weights set to inf by hand: no run gets there on purpose.)"""
    from srx4.core.errors import RunStopped
    from srx4.train.config import TrainConfig
    from srx4.train.loop_rules import EpochTally
    from srx4.train.trainer import Trainer
    monkeypatch.setenv("SRX4_WORK_DIR", str(tmp_path))
    cfg = TrainConfig(data=str(pairs_dir), val_fraction=0, num_blocks=1, channels=8, batch_size=4, patch_size=8,
                      patches_per_image=2, device="cpu", epochs=1, ema=0, run="inf", quiet=True, sample_every=0)
    trainer = Trainer(cfg, torch.device("cpu"))
    try:
        with torch.no_grad():
            next(trainer.parts.plain_model.parameters()).fill_(float("inf"))
        with pytest.raises(RunStopped, match="non-finite weights"):
            trainer._end_epoch(0, EpochTally(), False, 1.0)
        assert not (tmp_path / "logs/inf/best.safetensors").exists()
    finally:
        trainer.data.close()
    done = run_script("train.py", "--learning-rate", "1e39", "--device", "cpu", work=tmp_path, check=False)
    assert done.returncode == 2 and "--learning-rate = 1e+39: more than 0 (and at most 1e36" in done.stderr


def test_an_out_of_memory_step_is_one_line_saying_what_to_lower():
    from srx4.train.step import out_of_memory_line
    line = out_of_memory_line(1, 2, torch.device("cpu"), 32, 48, 4, "fp16", 1)
    assert line.startswith("rank 1 of 2 (cpu): out of GPU memory in a training step: batch 32 of 48 px LR patches")
    assert "(192 px HR), fp16" in line and "lower --batch-size or --patch-size" in line and "\n" not in line
