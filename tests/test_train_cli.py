"""Real `python src/train.py` runs on small real images: artifacts, resume, kill -9,
hostile input, non-finite losses, and rebuilding the model in a fresh process."""
import base64
import csv
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import REPO, TINY, make_pairs, run_script
from srx4.image.codec import write_png


def train(work, data, *extra, check=True):
    return run_script("train.py", "--data", data, *TINY, *extra, work=work, check=check)


def test_train_writes_every_artifact_and_resumes(tmp_path, pairs_dir):
    train(tmp_path, pairs_dir, "--epochs", "2", "--run", "r1")
    run = tmp_path / "logs" / "r1"
    for name in ("best.safetensors", "model.json", "last.ckpt", "config.json", "split.json", "hygiene.json",
                 "train.log", "metrics.csv", "curves.png", "samples/epoch_002.png"):
        assert (run / name).is_file(), name
    split = json.loads((run / "split.json").read_text())
    assert split["val"] and not set(split["train"]) & set(split["val"])
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
    # curves.png is drawn at most every 20 s during a run, and always at its end: the last one has every epoch
    # (written after the last metrics row), and the report shows that same picture
    assert (run / "curves.png").stat().st_mtime_ns >= (run / "metrics.csv").stat().st_mtime_ns
    assert base64.b64encode((run / "curves.png").read_bytes()).decode() in (run / "report.html").read_text()
    checkpoint = torch.load(run / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["train_config"]["run"] == "r1"

    again = train(tmp_path, pairs_dir, "--epochs", "1", "--run", "r1", check=False)  # never over an earlier run
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr

    out = train(tmp_path, pairs_dir, "--resume", run / "last.ckpt", "--epochs", "3").stdout
    assert "resuming" in out and "epoch 3/3" in out and "epoch 1/3" not in out
    assert json.loads((run / "split.json").read_text()) == split
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 4

    # the weights rebuild the model in a fresh process, with no training config
    code = ("import sys, torch; sys.path.insert(0, 'src'); from srx4.models.weights import load_model; "
            f"m, c = load_model(r'{run}'); print(tuple(m(torch.rand(1, 3, 8, 8)).shape), c['name'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert "(1, 3, 32, 32) srresnet" in done.stdout


def test_srcnn_and_val_fraction_zero(tmp_path, pairs_dir):
    train(tmp_path, pairs_dir, "--model", "srcnn", "--epochs", "1", "--val-fraction", "0", "--run", "s")
    assert json.loads((tmp_path / "logs/s/split.json").read_text())["val"] == []
    assert json.loads((tmp_path / "logs/s/model.json").read_text())["name"] == "srcnn"


def test_select_score_keeps_the_best_score_epoch(tmp_path, pairs_dir):
    out = train(tmp_path, pairs_dir, "--epochs", "4", "--run", "sel", "--select", "score",
                "--learning-rate", "3e-3").stdout
    with open(tmp_path / "logs/sel/metrics.csv") as f:
        scores = [float(row["val_score"]) for row in csv.DictReader(f)]
    summary = json.loads((tmp_path / "logs/sel/summary.json").read_text())
    assert summary["best_epoch"] == 1 + scores.index(max(scores))
    assert abs(summary["best_subset"]["score"] - max(scores)) < 1e-3
    board = summary["leaderboard"]            # no known competition here: GNR638's PSNR + 40 SSIM, named
    assert board["metric"] == "score" and "no known competition" in board["why"]
    assert (board["model"], board["bicubic"]) == (summary["model"]["score"], summary["bicubic"]["score"])
    assert "best validation score (PSNR + 40 SSIM)" in out
    assert "\r" not in out and "it/s" not in out                   # piped output: no redrawn bars
    refused = train(tmp_path, pairs_dir, "--select", "ssim", "--run", "x", check=False)
    assert refused.returncode == 2 and "--select" in refused.stderr


def _model_state(path):
    return torch.load(path, weights_only=True)["model"]


@pytest.mark.slow
@pytest.mark.parametrize("budget", [[], ["--ram-budget-gb", "1e-5", "--disk-budget-gb", "1e-5"]],
                         ids=["cached", "streamed"])
def test_kill_minus_9_then_resume_gives_bit_identical_weights(tmp_path, budget):
    """Killed mid-epoch, resumed: the same weights as a run never stopped. Streamed: the RAM and
    disk budgets (10.7 KB) far below the decoded set (77 KB), so no cache, the same promise."""
    data = make_pairs(tmp_path / "data", count=6)
    args = ["--epochs", "2", "--patches-per-image", "60", "--checkpoint-every", "7", "--sample-every", "0", *budget]
    out = train(tmp_path, data, *args, "--run", "whole").stdout
    if budget:
        assert "data path: streamed" in out and "over the RAM budget 0.00 GiB and the disk budget 0.00 GiB" in out
        assert "image cache" not in out
    cmd = [sys.executable, str(REPO / "src/train.py"), "--data", str(data), *TINY, *args, "--run", "killed"]
    env = {"SRX4_WORK_DIR": str(tmp_path), "SRX4_KAGGLE_ROOT": str(tmp_path / "none"), "PATH": "/usr/bin:/bin",
           "SRX4_CPU_BF16": os.environ["SRX4_CPU_BF16"]}     # the precision of the other runs (conftest)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "logs/killed/last.ckpt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.is_file() and torch.load(ckpt, weights_only=True)["samples_seen"] >= 14 * 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=True)   # the checkpoint survived the kill intact
    assert killed_at["samples_seen"] < torch.load(tmp_path / "logs/whole/last.ckpt", weights_only=True)["samples_seen"]
    train(tmp_path, data, *args, "--resume", ckpt)   # the same flags as the killed run
    whole, resumed = _model_state(tmp_path / "logs/whole/last.ckpt"), _model_state(ckpt)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    a, b = load_file(tmp_path / "logs/whole/best.safetensors"), load_file(tmp_path / "logs/killed/best.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def hostile_folder(root):
    """A data folder with every kind of bad file next to decodable pairs in several modes."""
    folder = make_pairs(root, count=6, hr_side=64)
    lr, hr = folder / "lr", folder / "hr"
    good = hr / "img_000.png"
    img_hr = np.array(Image.open(good))
    img_lr = np.array(Image.open(lr / "img_000.png"))
    def both(name, save):
        save(lr / name, img_lr)
        save(hr / name, img_hr)
    both("grey mode.png", lambda p, a: Image.fromarray(a).convert("L").save(p))
    both("palette_é.png", lambda p, a: Image.fromarray(a).convert("P").save(p))
    both("rgba.png", lambda p, a: Image.fromarray(a).convert("RGBA").save(p))
    both("deep16.png", lambda p, a: Image.fromarray(a[:, :, 0].astype(np.uint16) * 257).save(p))
    both("jpeg_bytes.png", lambda p, a: Image.fromarray(a).save(p, format="JPEG"))
    (lr / "zero.png").write_bytes(b"")
    (hr / "zero.png").write_bytes(b"")
    data = good.read_bytes()
    (lr / "truncated.png").write_bytes((lr / "img_001.png").read_bytes())
    (hr / "truncated.png").write_bytes(data[: len(data) // 2])
    corrupt = bytearray(data)
    corrupt[80:300] = bytes(b ^ 0x5A for b in corrupt[80:300])
    (lr / "corrupt_idat.png").write_bytes((lr / "img_002.png").read_bytes())
    (hr / "corrupt_idat.png").write_bytes(bytes(corrupt))
    (lr / "text.png").write_text("hello")
    (hr / "text.png").write_text("hello")
    (lr / "x.png").mkdir()
    (lr / ".DS_Store").write_bytes(b"\0")
    (hr / "Thumbs.db").write_bytes(b"\0")
    (lr / "lr_only.png").write_bytes((lr / "img_003.png").read_bytes())
    (hr / "hr_only.png").write_bytes(good.read_bytes())
    write_png(lr / "wrong_size.png", img_lr[:10])
    write_png(hr / "wrong_size.png", img_hr)
    write_png(lr / "tiny.png", img_lr[:6, :6])
    write_png(hr / "tiny.png", img_hr[:24, :24])
    return folder


def _train_hostile(work):
    done = train(work, hostile_folder(work / "data"), "--epochs", "2", "--run", "h", "--val-fraction", "0.3")
    (work / "train.stdout").write_text(done.stdout)
    (work / "train.stderr").write_text(done.stderr)


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """One 2-epoch run on hostile_folder(), trained once for the session (all xdist workers),
    shared by the tests below, each worker on its own copy: (work folder, data folder, the
    run's output as .stdout and .stderr)."""
    import shutil
    from types import SimpleNamespace
    from conftest import built_once
    work = tmp_path_factory.mktemp("hostile")
    shutil.copytree(built_once(tmp_path_factory, "hostile", _train_hostile), work, dirs_exist_ok=True, symlinks=True)
    out = SimpleNamespace(stdout=(work / "train.stdout").read_text(), stderr=(work / "train.stderr").read_text())
    return work, work / "data", out


@pytest.mark.slow
def test_hostile_folder_names_every_file_it_leaves_out(hostile_run):
    work, _, out = hostile_run
    report = json.loads((work / "logs/h/hygiene.json").read_text())
    named = " ".join(n for names in report["problems"].values() for n in names)
    for bad in ("zero.png", "truncated.png", "corrupt_idat.png", "text.png", "lr/x.png", "lr/.DS_Store",
                "hr/Thumbs.db", "lr_only.png", "hr_only.png", "wrong_size.png"):
        assert bad in named, bad
    # the undecodable pairs are counted once, as left out, and leave the split: no epoch cuts patches to drop
    split = json.loads((work / "logs/h/split.json").read_text())
    used = set(split["train"] + split["val"])
    assert report["used"] == len(used) and "hr/truncated.png" in named and "hr/corrupt_idat.png" in named
    assert not {"truncated.png", "corrupt_idat.png"} & used
    assert "[ WARN" not in out.stdout + out.stderr and "libpng" not in out.stdout + out.stderr   # OpenCV's own lines


@pytest.mark.slow
def test_hostile_folder_trains_on_odd_but_readable_files(hostile_run):
    work, _, out = hostile_run
    report = json.loads((work / "logs/h/hygiene.json").read_text())
    split = json.loads((work / "logs/h/split.json").read_text())
    used = set(split["train"] + split["val"])
    for fine in ("grey mode.png", "palette_é.png", "rgba.png", "deep16.png", "jpeg_bytes.png"):
        assert fine in used, fine
    # tiny.png is used (for validation), so it is a note, not among the files left out
    assert "tiny.png" in split["val"]
    assert report["notes"] == {"smaller than the 8px patch (validation only)": ["tiny.png"]}
    assert f"split: {len(split['train'])} train, {len(split['val'])} val" in out.stdout
    assert f"{report['used']} pairs used" in out.stdout


@pytest.mark.slow
def test_hostile_run_says_where_it_stands_and_finishes(hostile_run):
    work, _, out = hostile_run
    assert "best validation PSNR" in out.stdout
    first_epoch = next(line for line in out.stdout.splitlines() if line.startswith("epoch 1/2"))
    assert "| the run: about" in first_epoch                  # the whole run's time left, not only the epoch's
    assert "final check: the best weights and bicubic on" in out.stdout and "writing the report" in out.stdout
    assert "report.html not written" not in (work / "logs/h/train.log").read_text()


@pytest.mark.slow
def test_training_images_held_on_the_device_give_the_same_run(hostile_run):
    """--device-data on (the CPU here) crops and flips where the images are held: the same
    run, bit for bit, as the DataLoader's."""
    work, folder, _ = hostile_run
    on = train(work, folder, "--epochs", "2", "--run", "h_on", "--val-fraction", "0.3", "--device-data", "on")
    assert "crops and flips done there" in on.stdout
    dropped = [[int(row["dropped_samples"]) for row in csv.DictReader(open(work / f"logs/{r}/metrics.csv"))]
               for r in ("h", "h_on")]
    assert dropped[0] == dropped[1] == [0, 0]          # the bad pairs left the split before the epochs
    a, b = (load_file(work / f"logs/{r}/best.safetensors") for r in ("h", "h_on"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    table = run_script("inspect_run.py", work / "logs/h", work / "logs/h_on", work=work).stdout
    header = table.splitlines()[0]
    assert "device_data" in header and "| h |" in table and "| h_on |" in table and "num_blocks" not in header


@pytest.mark.slow
def test_inspect_run_reads_a_hostile_run_back(hostile_run):
    work, _, _ = hostile_run
    report = json.loads((work / "logs/h/hygiene.json").read_text())
    split = json.loads((work / "logs/h/split.json").read_text())
    shown = json.loads(run_script("inspect_run.py", work / "logs/h", "--json", work=work).stdout)
    assert shown["hygiene"]["used"] == report["used"]
    assert shown["hygiene"]["problems"] == {k: len(v) for k, v in report["problems"].items()}
    assert shown["split"] == {"train": len(split["train"]), "val": len(split["val"])}
    assert shown["final"]["final_check_on"] == "validation"


@pytest.mark.slow
@pytest.mark.skipif(not (importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx")),
                    reason="needs requirements-extras.txt")
def test_export_checks_onnx_on_the_hostile_lr_folder(hostile_run):
    """export.py compares ONNX Runtime with torch on every readable LR file, passing over the rest."""
    work, folder, _ = hostile_run
    done = run_script("export.py", "--weights", work / "logs/h", "--check-on", folder / "lr", work=work)
    assert "left out (unreadable):" in done.stdout and "zero.png" in done.stdout
    assert (work / "logs/h/model.onnx").is_file()
    assert re.search(r"ONNX Runtime vs torch: max [01] grey", done.stdout), done.stdout


def test_empty_folder_is_one_clear_error(tmp_path):
    (tmp_path / "empty/lr").mkdir(parents=True)
    (tmp_path / "empty/hr").mkdir()
    done = train(tmp_path, tmp_path / "empty", check=False)
    assert done.returncode == 2 and "no usable image pairs" in done.stderr and "Traceback" not in done.stderr
    done = train(tmp_path, tmp_path / "missing", check=False)
    assert done.returncode == 2 and "missing/lr" in done.stderr and "Traceback" not in done.stderr
    done = train(tmp_path, tmp_path / "empty", "--resume", tmp_path / "nope.ckpt", check=False)
    assert done.returncode == 2 and "nope.ckpt: checkpoint not found" in done.stderr and "Traceback" not in done.stderr


def test_non_finite_losses_stop_with_the_last_good_checkpoint(tmp_path, pairs_dir):
    train(tmp_path, pairs_dir, "--epochs", "1", "--run", "nan")
    good = torch.load(tmp_path / "logs/nan/last.ckpt", weights_only=True)
    done = train(tmp_path, pairs_dir, "--resume", tmp_path / "logs/nan/last.ckpt", "--epochs", "3",
                 "--learning-rate", "1e36", "--patches-per-image", "4", "--max-bad-steps", "2", check=False)
    assert done.returncode == 2 and "non-finite" in done.stderr
    after = torch.load(tmp_path / "logs/nan/last.ckpt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in after["model"].values() if v.is_floating_point())
    assert after["epoch"] == good["epoch"]


def test_weights_for_another_scale_are_refused(tmp_path, pairs_dir):
    train(tmp_path, pairs_dir, "--epochs", "1", "--run", "x4")
    pairs_x2 = make_pairs(tmp_path / "x2", count=6, scale=2)
    done = train(tmp_path, pairs_x2, "--epochs", "1", "--scale", "2", "--init-weights", tmp_path / "logs/x4",
                 check=False)
    assert done.returncode == 2 and "x4, not --scale 2" in done.stderr and "Traceback" not in done.stderr


def test_progress_off_a_terminal_is_a_plain_line_a_minute(capsys):
    from srx4.core.progress import PlainProgress, progress
    bar = PlainProgress(range(4), desc="score", unit="img", interval=0.0)
    bar.set_postfix(loss="0.0123")
    assert list(bar) == [0, 1, 2, 3]
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("score: 1/4 img (25%), ")
    assert lines[-1].startswith("score: 4/4 img (100%), ") and "about 0m00s left" in lines[-1]
    assert lines[-1].endswith("(loss=0.0123)")
    quiet = PlainProgress(range(3), desc="x", interval=60.0)
    assert list(quiet) == [0, 1, 2] and capsys.readouterr().err == ""      # nothing before a minute
    assert isinstance(progress(range(2)), PlainProgress)                    # pytest's stderr is not a TTY
    assert list(progress(range(2), quiet=True)) == [0, 1]


def test_a_swapped_pair_is_caught_named_and_left_out(tmp_path):
    """Two HR files swapped among real pairs: the bicubic check scores both under 18 dB, names
    them in the log, hygiene.json and report.html, and no sample of theirs is trained on;
    --min-pair-psnr 0 keeps them."""
    folder = make_pairs(tmp_path / "data", count=8)
    one, two = folder / "hr/img_001.png", folder / "hr/img_002.png"       # crops of two different photos
    swapped = two.read_bytes()
    two.write_bytes(one.read_bytes())
    one.write_bytes(swapped)
    out = train(tmp_path, folder, "--epochs", "1", "--val-fraction", "0.25", "--run", "dirty").stdout
    report = json.loads((tmp_path / "logs/dirty/hygiene.json").read_text())
    check = report["pair_check"]
    assert check["left_out"] == ["img_001.png", "img_002.png"] and check["measured"] == 8
    assert {n for n, *_ in check["worst"][:2]} == {"img_001.png", "img_002.png"}
    assert all(up < 18 and down < 18 for _, up, down in check["worst"][:2])
    assert all(up >= 18 and down is None for _, up, down in check["worst"][2:])
    named = report["problems"]["LR not HR's downscale (under --min-pair-psnr upscaled and averaged down)"]
    assert [n.split()[0] for n in named] == ["img_001.png", "img_002.png"] and report["used"] == 6
    assert "pair check (bicubic LR vs HR)" in out and "under 18 dB left out: 2" in out and "img_001.png" in out
    split = json.loads((tmp_path / "logs/dirty/split.json").read_text())
    in_train = len({"img_001.png", "img_002.png"} & set(split["train"]))
    rows = list(csv.DictReader(open(tmp_path / "logs/dirty/metrics.csv")))
    assert int(rows[0]["dropped_samples"]) == 2 * in_train            # TINY: 2 patches per image an epoch
    page = (tmp_path / "logs/dirty/report.html").read_text()
    assert 'id="pairs"' in page and "img_001.png" in page.split('id="pairs"')[1]

    kept = train(tmp_path, folder, "--epochs", "1", "--val-fraction", "0.25", "--run", "kept",
                 "--min-pair-psnr", "0").stdout
    report = json.loads((tmp_path / "logs/kept/hygiene.json").read_text())
    assert report["pair_check"]["left_out"] == [] and report["used"] == 8 and "none left out" in kept
    rows = list(csv.DictReader(open(tmp_path / "logs/kept/metrics.csv")))
    assert int(rows[0]["dropped_samples"]) == 0


def test_precision_is_decided_once_logged_saved_and_a_resume_that_differs_says_so(tmp_path, pairs_dir):
    """On a CPU with native bf16 (SRX4_CPU_BF16=1) SRResNet trains in bf16 channels-last and
    validates in fp32: one line, in config.json and last.ckpt. Resumed on a CPU without it
    (SRX4_CPU_BF16=0) the run says in one line that it now decides fp32, and goes on."""
    first = run_script("train.py", "--data", pairs_dir, *TINY, "--epochs", "1", "--run", "p", "--compile",
                       work=tmp_path, env_extra={"SRX4_CPU_BF16": "1"})
    lines = [x for x in first.stdout.splitlines() if x.startswith("precision:")]
    assert len(lines) == 1 and "train bf16, channels-last; validate fp32" in lines[0], first.stdout
    run = tmp_path / "logs" / "p"
    log = (run / "train.log").read_text().splitlines()        # what was printed before the log existed, first
    assert "warning: no effect here: --compile (torch.compile is used on CUDA only)" in log[0]
    saved = json.loads((run / "config.json").read_text())["precision"]
    assert (saved["train"], saved["validate"], saved["channels_last"]) == ("bf16", "fp32", True)
    assert torch.load(run / "last.ckpt", weights_only=False)["precision"] == saved
    resumed = run_script("train.py", "--resume", run / "last.ckpt", "--epochs", "2", work=tmp_path,
                         env_extra={"SRX4_CPU_BF16": "0"})
    assert "precision: train fp32; validate fp32" in resumed.stdout
    assert "warning: precision differs from the run's start" in resumed.stdout
    assert json.loads((run / "config.json").read_text())["precision"]["train"] == "fp32"
    assert "epoch 2/2" in resumed.stdout
