"""What the full-scale Kaggle run needs, each found missing once: AMP dtype per GPU, the
shared and cleaned-up image cache, a split that keeps numbered frames together,
resuming (read-only folders, other process counts), workers, submission ids,
abbreviated flags, the run handoff to predict, and the loud bicubic guard."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, SHARED, TINY, make_pairs, needs_shared, run_ranks, run_script
from srx4.data import cache as image_cache
from srx4.data.patches import EpochBatches, samples_per_epoch
from srx4.train.step import learning_rate_at, schedule_position
from srx4.train.validate import size_batches, validate
from srx4.data.cache import CacheError, ImageCache
from srx4.core.precision import amp_dtype_for, for_inference, for_training
from srx4.image.scoring import validation_metrics
from srx4.data.pairs import scan_pairs, split_pairs
from srx4.data.train_data import worker_count


def train(work, data, *extra, check=True, env_extra=None):
    return run_script("train.py", "--data", data, *TINY, *extra, work=work, check=check, env_extra=env_extra)


# 1. AMP ----------------------------------------------------------------------------------------
def test_amp_dtype_follows_the_compute_capability():
    assert amp_dtype_for((7, 5)) == torch.float16     # Kaggle's T4: no native bf16 convolutions
    assert amp_dtype_for((6, 0)) == torch.float16     # P100
    assert amp_dtype_for((8, 0)) == torch.bfloat16    # A100
    assert amp_dtype_for((9, 0)) == torch.bfloat16    # H100
    cuda = torch.device("cuda")                      # explicit choices need no GPU to decide
    assert for_inference(cuda, True, "fp16") == torch.float16 and for_inference(cuda, True, "bf16") == torch.bfloat16
    assert for_inference(cuda, False, "bf16") is None
    assert for_inference(torch.device("cpu"), True, "fp16") is None          # fp16 is no CPU's: predict in fp32
    assert for_inference(torch.device("cpu"), True, torch.float16) == torch.float16   # validation's own decision
    with pytest.raises(ValueError, match="amp-dtype"):
        for_inference(cuda, True, "fp8")
    fp16 = for_training(cuda, True, "fp16", True)                            # a T4's choice, decided anywhere
    assert (fp16.train, fp16.validate, fp16.grad_scaler, fp16.channels_last) == ("fp16", "fp16", True, True)


# 2. the image cache ----------------------------------------------------------------------------
def _cache_args(folder):
    pairs, _ = scan_pairs(folder, 4)
    return [p.hr_path for p in pairs], [(w * 4, h * 4) for w, h in (p.lr_size for p in pairs)]


def test_ranks_share_one_cache_file_and_the_last_one_out_deletes_it(tmp_path):
    folder = make_pairs(tmp_path / "d", count=4)
    paths_, sizes = _cache_args(folder)
    cache_dir = tmp_path / "cache"
    lines = []
    rank0 = ImageCache(paths_, sizes, cache_dir=cache_dir, shared=True, builder=True, log=lines.append)
    rank1 = ImageCache(paths_, sizes, cache_dir=cache_dir, shared=True, builder=False, log=lines.append)
    assert len(list(cache_dir.glob("*.u8"))) == 1 and rank0._mm_path == rank1._mm_path
    assert all(np.array_equal(rank0[i], rank1[i]) for i in range(len(paths_)))
    assert any("on disk at" in line and "shared by every rank" in line for line in lines)
    rank0.close()
    assert list(cache_dir.glob("*.u8"))            # rank 1 still uses it
    rank1.close()
    assert not list(cache_dir.iterdir())            # nothing left behind


KILLED_BUILDER = """
import os, sys, signal
sys.path.insert(0, {src!r})
from srx4.data.cache import ImageCache
ImageCache({paths!r}, {sizes!r}, ram_budget=0, cache_dir={cache_dir!r}, log=lambda m: None)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_run_cache_is_reused_or_swept_never_piled_up(tmp_path):
    folder = make_pairs(tmp_path / "d", count=4)
    paths_, sizes = _cache_args(folder)
    cache_dir = tmp_path / "cache"
    code = KILLED_BUILDER.format(src=str(REPO / "src"), paths=paths_, sizes=sizes, cache_dir=str(cache_dir))
    assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL
    left = sorted(p.name for p in cache_dir.iterdir())
    assert len([n for n in left if n.endswith(".u8")]) == 1          # the kill left it behind...
    lines = []
    again = ImageCache(paths_, sizes, ram_budget=0, cache_dir=cache_dir, log=lines.append)
    assert any("reused" in line for line in lines)                   # ...and the same files reuse it
    again.close()
    assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL
    other = ImageCache(paths_[:2], sizes[:2], ram_budget=0, cache_dir=cache_dir, log=lines.append)
    assert any("removed 1 stale" in line for line in lines)           # other files: the stale one goes
    assert len(list(cache_dir.glob("*.u8"))) == 1
    other.close()
    assert not list(cache_dir.iterdir())


def test_cache_checks_free_disk_and_stays_out_of_kaggle_working(tmp_path, monkeypatch):
    folder = make_pairs(tmp_path / "d", count=2)
    paths_, sizes = _cache_args(folder)
    monkeypatch.setattr(image_cache, "DISK_MARGIN", 1 << 62)         # "the disk is too small"
    with pytest.raises(CacheError, match="GiB needed in .* free"):
        ImageCache(paths_, sizes, ram_budget=0, cache_dir=tmp_path / "c", log=lambda m: None)
    assert not list((tmp_path / "c").glob("*.u8"))
    monkeypatch.setenv("SRX4_KAGGLE_ROOT", str(tmp_path / "kaggle"))
    (tmp_path / "kaggle" / "input").mkdir(parents=True)
    with pytest.raises(CacheError, match="20 GB output folder"):
        ImageCache(paths_, sizes, ram_budget=0, cache_dir=tmp_path / "kaggle" / "working" / "c", log=lambda m: None)


# 3. validation -----------------------------------------------------------------------------------
def test_batched_validation_equals_per_image_and_float32_metrics_float64(tmp_path):
    from srx4.data.patches import WholeImages
    from srx4.data.cache import CacheView
    from srx4.models import SRResNet
    folder = make_pairs(tmp_path / "d", count=5)
    pairs, _ = scan_pairs(folder, 4)
    cache = ImageCache([p.lr_path for p in pairs] + [p.hr_path for p in pairs],
                       [p.lr_size for p in pairs] + [(w * 4, h * 4) for w, h in (p.lr_size for p in pairs)])
    n = len(pairs)
    val = WholeImages([p.name for p in pairs], CacheView(cache, range(n)), CacheView(cache, range(n, 2 * n)))
    torch.manual_seed(0)
    model = SRResNet(4, 1, 8, bicubic_residual=True)
    torch.nn.init.normal_(model.tail.weight, std=0.01)               # a model that is not bicubic
    one = validate(model, val, torch.device("cpu"), 4, indices=[0, 2, 4], batch_size=1)
    batched = validate(model, val, torch.device("cpu"), 4, indices=[0, 2, 4], batch_size=3)
    assert one.images == batched.images == 3 and len(one.per_image) == 3
    assert all(abs(one.figure(k) - batched.figure(k)) < 1e-4 for k in ("psnr", "psnr_y", "ssim", "score"))
    assert [len(b) for b in size_batches(range(5), lambda i: (1,) if i < 3 else (2,), 2)] == [2, 1, 2]
    sr, hr = (torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(k)) for k in (1, 2))
    f64, f32 = validation_metrics(sr, hr, 4, torch.float64), validation_metrics(sr, hr, 4, torch.float32)
    assert (f64 - f32.double()).abs()[:, [0, 1]].max() < 1e-4        # dB
    assert (f64 - f32.double()).abs()[:, 2].max() < 1e-5             # SSIM


def test_validation_subset_each_epoch_whole_set_at_the_end(tmp_path):
    data = make_pairs(tmp_path / "data", count=10)
    out = train(tmp_path, data, "--epochs", "2", "--val-fraction", "0.3", "--val-limit", "1", "--run", "v").stdout
    summary = json.loads((tmp_path / "logs/v/summary.json").read_text())
    assert summary["best_subset"]["images"] == 1 and summary["model"]["images"] == 3
    assert "on the 1-image subset" in out and "best weights on validation (3 images)" in out
    with open(tmp_path / "logs/v/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["train_seconds"]) > 0 and float(r["val_seconds"]) > 0 for r in rows)


# 4. the split ------------------------------------------------------------------------------------
def _neighbours_across(names, split):
    val = set(split["val"])
    ordered = sorted(names)
    return sum((a in val) != (b in val) for a, b in zip(ordered, ordered[1:]))


def test_numbered_frames_stay_together_in_blocks():
    names = [f"{5 * k + 29:05d}.png" for k in range(200)]             # 00029.png, 00034.png, ...
    split = split_pairs(names, 0.15, 42)
    blocks = split["val_frame_blocks"]
    assert blocks and split["frame_block"] == 2 and len(split["val"]) >= 30
    assert _neighbours_across(names, split) <= 2 * len(blocks)
    per_file = split_pairs(names, 0.15, 42, block=1)                  # what a per-file split does
    assert _neighbours_across(names, per_file) > 40 > _neighbours_across(names, split)
    coarse = split_pairs(names, 0.15, 42, block=10)
    assert _neighbours_across(names, coarse) <= 2 * len(coarse["val_frame_blocks"]) <= 8
    assert split_pairs(list(reversed(names)), 0.15, 42) == split     # seeded, order-free
    assert split_pairs(names, 0.15, 7) != split


# 6. resuming across process counts ---------------------------------------------------------------
def test_sample_positions_mean_the_same_for_any_process_count():
    n, b = 96, 4
    seen = [k for rank in (0, 1) for batch in list(EpochBatches(n, b, 42, 3, 0, rank, 2))[:5] for k in batch]
    position = 5 * b * 2                                              # 5 steps of 2 ranks
    rest = [k for batch in EpochBatches(n, b, 42, 3, position, 0, 1) for k in batch]
    assert not set(seen) & set(rest) and sorted(seen + rest) == [(3, i) for i in range(n)]
    assert samples_per_epoch(n, b, 2) == samples_per_epoch(n, b, 1) == n
    # the schedule is a function of samples: 10 steps of one process and 5 steps of two have seen the
    # same 40 samples and stand at the same place, step 10, not at each process's own step count
    one, two = schedule_position(10 * b * 1, b), schedule_position(5 * b * 2, b)
    assert one == two == 10
    assert learning_rate_at(two, 100, 1e-3, "cosine") != pytest.approx(learning_rate_at(5, 100, 1e-3, "cosine"))


def test_the_warm_up_follows_the_clock_as_the_cosine_does():
    """--time-limit far before the steps run out (100 epochs planned, the clock stops it):
    the warm-up ends with the clock's share of the run, then the cosine anneals by the clock."""
    import math
    by_steps = learning_rate_at(10, 100_000, 1e-3, "cosine", 500)
    assert by_steps == pytest.approx(1e-3 * 11 / 500)                       # no clock: as before
    early = learning_rate_at(10, 100_000, 1e-3, "cosine", 500, time_share=0.002)   # 200 steps' worth
    assert early == pytest.approx(1e-3 * 201 / 500)
    half = learning_rate_at(10, 100_000, 1e-3, "cosine", 500, time_share=0.5)
    assert half == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert learning_rate_at(10, 100_000, 1e-3, "cosine", 500, time_share=1.0) == pytest.approx(1e-5)


@pytest.mark.slow
def test_two_ranks_resumed_in_one_process_continue_at_the_same_point(tmp_path, free_port):
    data = make_pairs(tmp_path / "data", count=8)
    run_ranks("train.py", "--data", data, *TINY, "--epochs", "2", "--patches-per-image", "200",
              "--checkpoint-every", "5", "--time-limit", "0.0002", "--run-name", "two", "--val-fraction", "0",
              "--cache-dir", tmp_path / "cache", work=tmp_path, port=free_port)
    assert not list((tmp_path / "cache").iterdir())                     # the shared cache went with the run
    page = (tmp_path / "logs/two/report.html").read_text()              # the epoch cut by the clock, said
    done = len(list(csv.DictReader(open(tmp_path / "logs/two/metrics.csv"))))
    assert f"finished: {done - 1} of 2 epochs and part of epoch {done}" in page
    ckpt = torch.load(tmp_path / "logs/two/last.ckpt", weights_only=True)
    assert ckpt["world"] == 2 and ckpt["samples_in_epoch"] % 8 == 0 and 0 < ckpt["samples_seen"] < 2 * 8 * 200
    seen = ckpt["samples_seen"]
    out = run_script("train.py", "--resume", tmp_path / "logs/two/last.ckpt", "--time-limit", "0",
                     work=tmp_path).stdout
    n = len(ckpt["split"]["train"]) * 200
    total = 2 * samples_per_epoch(n, 4, 1) / 4
    expected = learning_rate_at(seen / 4, total, 1e-4, "cosine", min(500, int(total // 20)))
    line = next(line for line in out.splitlines() if line.startswith("resuming"))
    assert f"sample {ckpt['samples_in_epoch']} of the epoch" in line and f"learning rate {expected:.6g}" in line
    final = torch.load(tmp_path / "logs/two/last.ckpt", weights_only=True)
    assert final["epoch"] == 2 and final["samples_seen"] == 2 * n


# 5. resuming from a read-only folder -------------------------------------------------------------
def test_resume_from_read_only_kaggle_output_keeps_the_best_weights(tmp_path):
    data = make_pairs(tmp_path / "data", count=8)
    train(tmp_path / "first", data, "--epochs", "1", "--run", "r")
    attached = tmp_path / "kaggle" / "input" / "prev-output" / "logs" / "r"
    attached.parent.mkdir(parents=True)
    os.rename(tmp_path / "first" / "logs" / "r", attached)
    ckpt = torch.load(attached / "last.ckpt", weights_only=True)
    ckpt["best"]["psnr"] = 1e9                                        # no later epoch can beat it
    torch.save(ckpt, attached / "last.ckpt")
    (tmp_path / "kaggle" / "working").mkdir()
    run_script("train.py", "--resume", attached / "last.ckpt", "--epochs", "2", work=tmp_path,
               env_extra={"SRX4_KAGGLE_ROOT": str(tmp_path / "kaggle")})
    resumed = tmp_path / "kaggle" / "working" / "logs" / "r_resumed"
    assert (resumed / "last.ckpt").is_file() and torch.load(resumed / "last.ckpt", weights_only=True)["epoch"] == 2
    a, b = load_file(attached / "best.safetensors"), load_file(resumed / "best.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (resumed / "model.json").is_file()


# 8. workers --------------------------------------------------------------------------------------
def test_workers_share_the_cores_and_live_across_epochs(tmp_path):
    assert worker_count(-1, "cuda", 2, cpus=4) == 1        # Kaggle: 4 vCPUs, two ranks
    assert worker_count(-1, "cuda", 1, cpus=16) == 8
    assert worker_count(-1, "cpu", 1, cpus=16) == 0 and worker_count(3, "cuda", 2, cpus=4) == 3
    from srx4.runs.runlog import RunLog
    from srx4.data.train_data import TrainData
    from srx4.train.config import TrainConfig
    cfg = TrainConfig(data=str(make_pairs(tmp_path / "d", count=6)), patch_size=8, batch_size=4, workers=1,
                      device_data="off", val_fraction=0, run="w")
    data = TrainData(cfg, tmp_path, RunLog(tmp_path), 0, 1, torch.device("cpu"))
    try:
        loader = data.epoch_batches(0, 0)
        first = sum(1 for _ in loader)
        pids = [w.pid for w in loader._iterator._workers]
        again = data.epoch_batches(1, 0)
        assert again is loader and sum(1 for _ in again) == first > 0
        assert [w.pid for w in loader._iterator._workers] == pids and all(w.is_alive() for w in loader._iterator._workers)
    finally:
        data.close()


# 9. submission ids -------------------------------------------------------------------------------
def test_sample_submission_ids_are_used_and_strangers_refused(tmp_path):
    test = make_pairs(tmp_path / "test", count=3)
    pngs = tmp_path / "png"
    run_script("predict.py", "--model", "bicubic", "--input", test / "lr", "--output", pngs, work=tmp_path)
    sample = tmp_path / "data" / "sample_submission.csv"
    sample.parent.mkdir()
    sample.write_text("id,Encoded_Image\nimg_002,x\nimg_000,x\nimg_001,x\n")
    done = run_script("make_submission.py", "--lr-dir", test / "lr", "--output", tmp_path / "s.csv", work=tmp_path)
    assert "ids, order and count from" in done.stdout and f"reading PNGs from {pngs}" in done.stdout
    with open(tmp_path / "s.csv") as f:
        assert [r["id"] for r in csv.DictReader(f)] == ["img_002", "img_000", "img_001"]
    sample.write_text("id,Encoded_Image\nimg_000,x\nframe_9,x\nframe_10,x\n")
    refused = run_script("make_submission.py", "--lr-dir", test / "lr", "--output", tmp_path / "t.csv",
                         work=tmp_path, check=False)
    assert refused.returncode == 1 and "frame_9, frame_10" in refused.stderr and not (tmp_path / "t.csv").exists()


# 10. abbreviated flags ---------------------------------------------------------------------------
def test_abbreviated_flags_are_refused(tmp_path, pairs_dir):
    done = train(tmp_path, pairs_dir, "--epoch", "7", check=False)
    assert done.returncode == 2 and "unrecognized arguments: --epoch" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "(did you mean --epochs?)" in done.stderr   # no usage dump
    done = run_script("predict.py", "--weight", "x", work=tmp_path, check=False)
    assert done.returncode == 2 and "--weight" in done.stderr


# 12 and 0b. the handoff to predict, and the guard ------------------------------------------------
def test_predict_takes_the_run_train_finished_and_repeats_its_warning(tmp_path, pairs_dir):
    # an untrained net without the bicubic residual: far worse than bicubic, and said so loudly
    bad = train(tmp_path, pairs_dir, "--epochs", "1", "--patches-per-image", "1", "--no-bicubic-residual",
                "--run", "bad")
    assert "WARNING: this model is WORSE than bicubic" in bad.stdout
    assert json.loads((tmp_path / "logs/bad/summary.json").read_text())["worse_than_bicubic"] is True
    train(tmp_path, pairs_dir, "--epochs", "1", "--run", "good")
    os.utime(tmp_path / "logs" / "bad", (time.time() + 60,) * 2)       # a touched folder changes nothing
    os.utime(tmp_path / "logs" / "bad" / "best.safetensors", (time.time() + 60,) * 2)
    test_lr = make_pairs(tmp_path / "test", count=2) / "lr"
    done = run_script("predict.py", "--input", test_lr, "--device", "cpu", work=tmp_path)
    assert "logs/good/best.safetensors" in done.stdout and (tmp_path / "submissions/good/png").is_dir()
    done = run_script("predict.py", "--weights", tmp_path / "logs/bad", "--input", test_lr, "--device", "cpu",
                      work=tmp_path)
    assert "WARNING: this model is WORSE than bicubic" in done.stderr
    sub = run_script("make_submission.py", "--lr-dir", test_lr, "--output", tmp_path / "s.csv", work=tmp_path)
    assert f"reading PNGs from {tmp_path / 'submissions' / 'bad' / 'png'}" in sub.stdout


def test_a_failed_run_leaves_no_folder(tmp_path):
    (tmp_path / "empty/lr").mkdir(parents=True)
    (tmp_path / "empty/hr").mkdir()
    done = train(tmp_path, tmp_path / "empty", "--run", "nothing", check=False)
    assert done.returncode == 2 and "no usable image pairs" in done.stderr
    assert not (tmp_path / "logs" / "nothing").exists()


# 0a. the defaults on real competition frames -----------------------------------------------------
@needs_shared("samples/gnr638")
@pytest.mark.slow
def test_defaults_on_one_real_frame_do_not_fall_below_bicubic_on_the_other(tmp_path):
    """Train with the defaults (SRResNet-16, BatchNorm, L1; bf16 where the CPU has it) for 24 steps (one epoch of 8
    crops of GNR638 frame 00029, 48 patches each, batch 16), predict frame 00034 (bf16 where native, as predict.py
    does by default): at or
    above bicubic - 0.1 dB, and not bicubic."""
    from srx4.image.codec import read_image, write_png
    from srx4.image.resize import resize_tensor
    frames = SHARED / "samples" / "gnr638"
    lr, hr = read_image(frames / "lr/00029.png"), read_image(frames / "hr/00029.png")
    for k, (y, x) in enumerate((y, x) for y in (0, 134) for x in range(0, 480 - 120 + 1, 120)):
        write_png(tmp_path / "data/lr" / f"00029_s{k + 1:03d}.png", lr[y:y + 67, x:x + 120])
        write_png(tmp_path / "data/hr" / f"00029_s{k + 1:03d}.png", hr[4 * y:4 * y + 268, 4 * x:4 * x + 480])
    # the defaults as this machine runs them: bf16 autocast in channels-last on a CPU with native bf16
    out = run_script("train.py", "--data", tmp_path / "data", "--epochs", "1", "--val-fraction", "0",
                     "--device", "cpu", "--run", "real", work=tmp_path, timeout=600,
                     env_extra={"SRX4_CPU_BF16": ""}).stdout
    from srx4.core.system import cpu_flags_have_bf16
    native = cpu_flags_have_bf16(open("/proc/cpuinfo").read())
    assert ("precision: train bf16, channels-last; validate fp32" in out) == native
    assert "settings: " in out and "'num_blocks': 16, 'channels': 64, 'bicubic_residual': True}" in out
    steps = int(list(csv.DictReader(open(tmp_path / "logs/real/metrics.csv")))[-1]["step"])
    assert steps == 8 * 48 // 16
    (tmp_path / "test").mkdir()
    os.symlink(frames / "lr/00034.png", tmp_path / "test/00034.png")
    run_script("predict.py", "--input", tmp_path / "test", "--output", tmp_path / "sr", "--device", "cpu", work=tmp_path,
               env_extra={"SRX4_CPU_BF16": ""})                                      # predict's defaults too
    truth = read_image(frames / "hr/00034.png").astype(np.float64)
    sr = read_image(tmp_path / "sr/00034.png").astype(np.float64)
    lr_t = torch.from_numpy(read_image(frames / "lr/00034.png")).permute(2, 0, 1)[None].double() / 255
    bicubic = (resize_tensor(lr_t, 4).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round()
    psnr = lambda a: 10 * np.log10(255 ** 2 / ((a - truth) ** 2).mean())  # noqa: E731
    print(f"00034: model {psnr(sr):.3f} dB, bicubic {psnr(bicubic):.3f} dB after {steps} steps on 00029")
    assert psnr(sr) >= psnr(bicubic) - 0.1, (psnr(sr), psnr(bicubic))
    assert np.abs(sr - bicubic).mean() > 0.01                              # it trained: not bicubic's output
