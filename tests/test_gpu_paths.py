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
             "--epochs", "50", "--patches-per-image", "8", "--time-limit", "0.0025", "--val-fraction", "0.25",
             "--learning-rate", "1e-3", "--cache-dir", tmp_path / "cache", tmp_path=tmp_path)
    (run,) = [p for p in (tmp_path / "logs").iterdir() if (p / "summary.json").is_file()]
    summary = json.loads((run / "summary.json").read_text())
    assert "--time-limit" in summary["stopped"] and summary["epochs_done"] < 50   # the clock did decide
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
    assert "precision: train fp16 with a GradScaler; validate fp32; on CPU" in log
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
    assert list(rows) == ["t4-fp16", "bf16", "compile", "compile-ro", "ddp", "predict", "small-crops", "precision"]
    assert all(r["status"] == "ok" for r in rows.values()), rows
    assert rows["t4-fp16"]["figures"]["samples/s"] > 0 and "GradScaler" in rows["t4-fp16"]["figures"]
    assert rows["ddp"]["figures"]["ranks identical"] is True
    assert rows["predict"]["figures"]["frames"] == 4 and (tmp_path / "submission.csv").is_file()
    crops = rows["small-crops"]["figures"]
    assert crops["one at a time img/s"] > 0 and crops["batched img/s"] > 0 and crops["max diff (levels)"] <= 1
    assert float(rows["precision"]["figures"]["bicubic layer fp32 vs f64"]) < 1e-5
    assert "| t4-fp16 | ok |" in done.stdout
    assert (REPO / "benchmarks/RESULTS.md").read_bytes() == before
