"""Kaggle: the built kernel run for real against a fake /kaggle tree, its metadata,
the CLI wrappers without credentials, two-process DDP on CPU, and --time-limit."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, TINY, make_pairs, need_module, run_ranks, run_script
from srx4.submit.submission import validate_csv

sys.path.insert(0, str(REPO / "kernels"))
import build  # noqa: E402


def fake_kaggle(root):
    comp = root / "input" / "competitions" / "sr-comp"
    make_pairs(comp / "train", count=8)
    make_pairs(comp / "test", count=2)
    (comp / "test" / "hr").rename(root / "hidden_hr")  # the test HR is not given on Kaggle
    # the competition's sample submission: ids are stems, in its own order
    (comp / "sample_submission.csv").write_text("id,Encoded_Image\nimg_001,\nimg_000,\n")
    (root / "working").mkdir(parents=True)
    return comp


@pytest.mark.slow
def test_built_kernel_runs_against_a_fake_kaggle_tree(tmp_path):
    comp = fake_kaggle(tmp_path / "kaggle")
    train_args = " ".join(TINY + ["--epochs", "1"])
    folders = build.build(tmp_path / "build", "alice", "sr-comp", train_args, "--device cpu")
    train_folder = folders[0]
    meta = json.loads((train_folder / "kernel-metadata.json").read_text())
    assert meta["id"] == "alice/sr-comp-srx4-train" and meta["kernel_type"] == "script"
    assert meta["enable_gpu"] is True and meta["enable_internet"] is False
    assert meta["machine_shape"] == "NvidiaTeslaT4" and meta["competition_sources"] == ["sr-comp"]
    assert (train_folder / meta["code_file"]).is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE", "SRX4"))}
    env.update(SRX4_KAGGLE_ROOT=str(tmp_path / "kaggle"), KAGGLE_KERNEL_RUN_TYPE="Batch", CUDA_VISIBLE_DEVICES="")
    # an earlier session's output left a run and logs/last_run.json naming it: a stale pointer
    working = tmp_path / "kaggle" / "working"
    from srx4.models import build_model
    from srx4.models.weights import save_weights
    stale = {"name": "srcnn", "scale": 4}
    save_weights(working / "logs" / "stale" / "best.safetensors", build_model(stale), stale)
    (working / "logs" / "last_run.json").write_text(json.dumps({"run": "stale", "dir": str(working / "logs" / "stale"),
                                                                "finished": "1"}))
    done = subprocess.run([sys.executable, str(train_folder / meta["code_file"])], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.startswith("accelerator: NO GPU")       # what the session got, said first
    trained = json.loads((working / "logs" / "last_run.json").read_text())["dir"]
    assert Path(trained).name != "stale"
    manifest = json.loads(next((working / "submissions").glob("*/png/.srx4-weights.json")).read_text())
    assert manifest["weights"] == str(Path(trained) / "best.safetensors")      # the run it trained, by name
    # predict.py on Kaggle without --weights passes over a last_run.json older than the session
    (working / "logs" / "last_run.json").write_text(json.dumps({"run": "stale", "dir": str(working / "logs" / "stale"),
                                                                "finished": "1"}))
    bare = run_script("predict.py", "--input", comp / "test" / "lr", "--output", tmp_path / "bare", check=False,
                      work=working, env_extra={"SRX4_KAGGLE_ROOT": str(tmp_path / "kaggle"),
                                               "KAGGLE_KERNEL_RUN_TYPE": "Batch", "SRX4_SESSION_START": "1000",
                                               "SRX4_WEIGHTS_DIR": str(tmp_path / "no-weights")})
    assert bare.returncode == 2 and "no weights found" in bare.stderr
    shutil.rmtree(working / "logs" / "stale")
    sample = comp / "sample_submission.csv"
    assert validate_csv(working / "submission.csv", comp / "test" / "lr", sample_csv=sample) == 2
    with open(working / "submission.csv") as f:
        assert [row["id"] for row in csv.DictReader(f)] == ["img_001", "img_000"]   # the sample's ids and order
    assert (working / "logs").is_dir() and not (working / "srx4_code").exists()

    # the inference-only kernel finds weights attached under /kaggle/input
    attached = tmp_path / "kaggle" / "input" / "my-weights"
    attached.mkdir()
    run_dir = next(p for p in (working / "logs").iterdir() if p.is_dir())
    for name in ("best.safetensors", "model.json"):
        (attached / name).write_bytes((run_dir / name).read_bytes())
    (working / "submission.csv").unlink()
    predict_folder = folders[1]
    code = json.loads((predict_folder / "kernel-metadata.json").read_text())["code_file"]
    done = subprocess.run([sys.executable, str(predict_folder / code)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert validate_csv(working / "submission.csv", comp / "test" / "lr", sample_csv=sample) == 2


def test_train_kernel_without_the_competition_data_never_trains_the_demo(tmp_path):
    (tmp_path / "kaggle" / "input" / "some-other-dataset").mkdir(parents=True)
    (tmp_path / "kaggle" / "working").mkdir()
    (folder,) = build.build(tmp_path / "build", "alice", "sr-comp", " ".join(TINY + ["--epochs", "1"]),
                            "--device cpu")[:1]
    code = json.loads((folder / "kernel-metadata.json").read_text())["code_file"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE", "SRX4"))}
    env.update(SRX4_KAGGLE_ROOT=str(tmp_path / "kaggle"), KAGGLE_KERNEL_RUN_TYPE="Batch", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, str(folder / code)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode != 0
    assert "no competition data found" in done.stderr and "--no-demo" in done.stderr
    working = tmp_path / "kaggle" / "working"
    assert not (working / "submission.csv").exists() and not (working / "logs").exists()


@pytest.mark.slow
def test_assets_dataset_brings_shipped_weights_and_wheels_to_an_offline_kernel(tmp_path, learned):
    """--make-assets packs weights/<name>/ and the spandrel wheel; a train kernel with it
    attached installs the wheel with no index and fine-tunes from the weights by name."""
    need_module("spandrel")
    _, run_dir, _ = learned
    weights = tmp_path / "weights" / "tiny-x4"
    weights.mkdir(parents=True)
    for name in ("best.safetensors", "model.json"):
        (weights / name).write_bytes((run_dir / name).read_bytes())
    (weights / "CARD.md").write_text("tiny test weights\n")
    assets = build.build_assets(tmp_path / "build", "alice", tmp_path / "weights")
    assert (assets / "weights" / "tiny-x4" / "CARD.md").is_file() and (assets / build.ASSETS_MARKER).is_file()
    assert [w.name.split("-")[0] for w in (assets / "wheels").glob("*.whl")] == ["spandrel"]
    assert json.loads((assets / "dataset-metadata.json").read_text())["id"] == "alice/srx4-assets"
    comp = fake_kaggle(tmp_path / "kaggle")
    shutil.copytree(assets, tmp_path / "kaggle" / "input" / "srx4-assets")
    fine_tune = ["--init-weights", "tiny-x4", "--epochs", "1", "--batch-size", "4", "--patch-size", "8",
                 "--patches-per-image", "2", "--device", "cpu", "--threads", "1"]
    train_folder = build.build(tmp_path / "build", "alice", "sr-comp", " ".join(fine_tune), "--device cpu",
                               assets=["alice/srx4-assets"])[0]
    meta = json.loads((train_folder / "kernel-metadata.json").read_text())
    assert meta["dataset_sources"] == ["alice/srx4-assets"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE", "SRX4"))}
    env.update(SRX4_KAGGLE_ROOT=str(tmp_path / "kaggle"), KAGGLE_KERNEL_RUN_TYPE="Batch", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, str(train_folder / meta["code_file"])], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "installing spandrel-" in done.stdout and "shipped weights: tiny-x4" in done.stdout
    assert "initialised from tiny-x4" in done.stdout
    assert validate_csv(tmp_path / "kaggle" / "working" / "submission.csv", comp / "test" / "lr",
                        sample_csv=comp / "sample_submission.csv") == 2


def test_cli_wrappers_print_one_line_without_credentials(tmp_path):
    env = {"HOME": str(tmp_path), "KAGGLE_CONFIG_DIR": str(tmp_path / "none")}
    done = run_script("download.py", "--competition", "sr-comp", "--out", tmp_path / "d", work=tmp_path,
                      env_extra=env, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "KAGGLE_USERNAME" in done.stderr or "not on PATH" in done.stderr


def test_the_real_kaggle_cli_failing_is_one_line(tmp_path):
    """Credentials set but kaggle.com unreachable (this machine) or refusing them (a networked one):
    the installed kaggle CLI really runs, and its failure becomes one line naming the cause."""
    env = {"HOME": str(tmp_path), "KAGGLE_CONFIG_DIR": str(tmp_path / "none"), "KAGGLE_USERNAME": "nobody",
           "KAGGLE_KEY": "0" * 32}
    done = run_script("download.py", "--competition", "sr-comp", "--out", tmp_path / "d", work=tmp_path,
                      env_extra=env, check=False, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "cannot reach kaggle.com" in done.stderr or "(401)" in done.stderr or "(403)" in done.stderr, done.stderr


def test_ddp_two_processes_validate_like_one(tmp_path, pairs_dir, free_port):
    """torchrun --nproc_per_node=2 on CPU (gloo): the validation PSNR it reports equals a
    single process's on the same weights."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE")}
    env.update(SRX4_WORK_DIR=str(tmp_path), SRX4_KAGGLE_ROOT=str(tmp_path / "none"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port}",
           str(REPO / "src/train.py"), "--data", str(pairs_dir), *TINY, "--epochs", "1", "--run-name", "ddp",
           "--val-fraction", "0.4"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "x 2 processes" in (tmp_path / "logs/ddp/train.log").read_text()
    reported = torch.load(tmp_path / "logs/ddp/last.ckpt", weights_only=True)["best"]["psnr"]

    from srx4.models.weights import load_model
    from srx4.data.patches import ImageCache, WholeImages
    from srx4.train.validate import validate
    from srx4.data.pairs import load_split
    names = load_split(tmp_path / "logs/ddp/split.json")["val"]
    assert len(names) >= 2
    lr = ImageCache([str(pairs_dir / "lr" / n) for n in names], [(16, 16)] * len(names), log=print)
    hr = ImageCache([str(pairs_dir / "hr" / n) for n in names], [(64, 64)] * len(names), log=print)
    model, _ = load_model(tmp_path / "logs/ddp")
    single = validate(model, WholeImages(names, lr, hr), torch.device("cpu"), 4)
    assert abs(single.psnr - reported) < 1e-6


def test_ddp_rank_losing_a_whole_batch_does_not_hang(tmp_path, free_port):
    """Batch 1 per rank with an undecodable image: some step has no sample on one rank; every
    rank skips it together (DDP's collectives would otherwise hang). The streaming path meets a bad
    pair only when it decodes it (the cached path leaves it out of the split before the epochs)."""
    data = make_pairs(tmp_path / "data", count=6)
    broken = data / "hr" / "img_001.png"
    broken.write_bytes(broken.read_bytes()[:200])
    run_ranks("train.py", "--data", data, *TINY, "--batch-size", "1", "--epochs", "2", "--patches-per-image", "2",
              "--val-fraction", "0", "--loading", "stream", "--run-name", "lost", work=tmp_path, port=free_port,
              timeout=120)
    with open(tmp_path / "logs/lost/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and sum(int(r["dropped_samples"]) for r in rows) > 0


@pytest.mark.slow
def test_time_limit_stops_cleanly_annealed_and_the_run_resumes(tmp_path, pairs_dir):
    run = tmp_path / "logs" / "tl"
    done = run_script("train.py", "--data", pairs_dir, *TINY, "--epochs", "2", "--patches-per-image", "150",
                      "--time-limit", "0.0003", "--run", "tl", work=tmp_path)
    assert "--time-limit" in done.stdout and "resume with" in done.stdout
    stopped = torch.load(run / "last.ckpt", weights_only=True)
    per_epoch = len(stopped["split"]["train"]) * 150 // 4 * 4         # samples
    assert stopped["epoch"] == 0 and 0 < stopped["samples_in_epoch"] < per_epoch
    # the clock, not the epochs asked for, set the schedule: the run ended cold (cosine floor 1%)
    assert stopped["learning_rate"] < 0.05 * 1e-4, stopped["learning_rate"]
    with open(run / "metrics.csv") as f:   # the cut epoch was validated: its weights are the coldest
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1"]
    done = run_script("train.py", "--resume", run / "last.ckpt", "--time-limit", "0", work=tmp_path)
    final = torch.load(run / "last.ckpt", weights_only=True)
    assert final["epoch"] == 2 and final["samples_seen"] == 2 * per_epoch
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(float(r["val_seconds"]) >= 0 for r in rows)


@pytest.mark.slow
def test_a_kernel_built_with_a_recipe_prints_its_session_plan_and_decides_tta(tmp_path):
    """build.py --config: the recipe rides in the kernel, train.py plans the session by its
    [kaggle] settings, and the kernel predicts with x8 TTA because the plan says it fits."""
    comp = fake_kaggle(tmp_path / "kaggle")
    recipe = tmp_path / "kaggle-tiny.toml"
    recipe.write_text("[model]\nnum_blocks = 1\nchannels = 8\n[optimisation]\nepochs = 1\nbatch_size = 4\n"
                      "[data]\npatch_size = 8\npatches_per_image = 2\n[precision]\ndevice = 'cpu'\nthreads = 1\n"
                      "[kaggle]\nsession_hours = 12\npredict_tta = true\nmargin_minutes = 30\ncsv_format = 'png'\n")
    folder = build.build(tmp_path / "build", "alice", "sr-comp", "", "--device cpu", recipe=recipe)[0]
    code = json.loads((folder / "kernel-metadata.json").read_text())["code_file"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE", "SRX4"))}
    env.update(SRX4_KAGGLE_ROOT=str(tmp_path / "kaggle"), KAGGLE_KERNEL_RUN_TYPE="Batch", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, str(folder / code)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    out = done.stdout
    assert f"recipe {recipe.name}" in out and "--config" in out
    assert "session plan: a 12.00 h session" in out and "with x8 TTA as asked" in out
    predict_line = next(line for line in out.splitlines() if line.startswith("$") and "predict.py" in line)
    assert "predicting with x8 TTA" in out and "--tta" in predict_line.split()
    working = tmp_path / "kaggle" / "working"
    assert validate_csv(working / "submission.csv", comp / "test" / "lr", sample_csv=comp / "sample_submission.csv") == 2
    run_dir = next(p for p in (working / "logs").iterdir() if p.is_dir())
    assert json.loads((run_dir / "config.json").read_text())["config"].endswith(recipe.name)

    # a training that fails after weights exist still ends the session with a CSV
    (working / "submission.csv").unlink()
    failing = build.build(tmp_path / "build", "alice", "sr-comp", "--ema 2", "--device cpu", recipe=recipe)[0]
    done = subprocess.run([sys.executable, str(failing / code)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "TRAINING FAILED (exit 2)" in done.stdout and "--ema = 2.0" in done.stderr
    assert validate_csv(working / "submission.csv", comp / "test" / "lr", sample_csv=comp / "sample_submission.csv") == 2
