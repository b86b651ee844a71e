"""Recipes (configs/*.toml, train.py --config): every shipped recipe run end to end at tiny
size on the CPU, the recipe's errors as one line, flags over the recipe, resume without
it, idle settings named, the session plan's arithmetic and the installed srx4-* commands."""
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, make_pairs, run_script
from srx4.core.config_file import read_config_file
from srx4.submit.submission import validate_csv
from srx4.train.config import TrainConfig, from_saved
from srx4.train.plan import SessionPlan

RECIPES = sorted((REPO / "configs").glob("*.toml"))
# What size and device demand at tiny size on a CPU; everything else is the recipe's own.
TINY_SIZE = ["--epochs", "1", "--batch-size", "4", "--patch-size", "8", "--patches-per-image", "2", "--device", "cpu",
             "--threads", "1", "--sample-every", "0", "--val-limit", "2"]
MODEL_SIZE = ["--num-blocks", "1", "--channels", "8"]      # recipes that train from scratch


def test_the_shipped_recipes_are_the_ones_the_docs_name():
    assert [p.stem for p in RECIPES] == ["cpu-finetune", "demo", "gnr638-t4x2", "h100", "srgb-t4x2"]
    for recipe in RECIPES:
        text = recipe.read_text()
        header = text.split("\n[")[0]
        for part in ("For:", "Hardware:", "Time:", "Expect:", "Kaggle:"):      # the comment block at the top
            assert part in header, f"{recipe.name} lacks {part}"
        values, _ = read_config_file(recipe, TrainConfig)
        assert TrainConfig(**values).problems() == [], recipe.name


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_runs_end_to_end_at_tiny_size(recipe, tmp_path, request):
    """train.py --config RECIPE (sizes overridden), then predict (with the recipe's TTA) and
    the CSV in the recipe's format: the kernel's path, on a CPU."""
    values, digest = read_config_file(recipe, TrainConfig)
    data = make_pairs(tmp_path / "data" / "train", count=8, hr_side=64)
    test_lr = make_pairs(tmp_path / "data" / "test", count=2, hr_side=64) / "lr"
    extra = [] if values.get("init_weights") or "num_blocks" in values else MODEL_SIZE   # h100's SRResNet-16
    if values.get("init_weights", "").endswith(".pth"):      # the foreign start: a tiny one of the same kind
        extra = ["--init-weights", request.getfixturevalue("swinir")]
    run = run_script("train.py", "--config", recipe, "--data", data, "--run", "r", *TINY_SIZE, *extra,
                     work=tmp_path)
    run_dir = tmp_path / "logs" / "r"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"] == str(recipe) and config["config_sha256"] == digest == hashlib.sha256(
        recipe.read_bytes()).hexdigest()
    overridden = {"data", "run", "epochs", "batch_size", "patch_size", "patches_per_image", "device", "init_weights",
                  "val_limit", "sample_every", "threads", *(["num_blocks", "channels"] if extra == MODEL_SIZE else [])}
    for key, value in values.items():            # the recipe's own values, as it gave them
        if key not in overridden:
            assert config[key] == value, (key, config[key], value)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["srx4_version"] and summary["config_file"] == str(recipe)
    assert json.loads((run_dir / "model.json").read_text())["srx4_version"] == summary["srx4_version"]
    if values.get("session_hours") or values.get("time_limit"):
        assert "plan: " in run.stdout and (run_dir / "plan.json").is_file()
    tta = ["--tta"] if values.get("predict_tta") else []
    run_script("predict.py", "--weights", run_dir, "--input", test_lr, "--output", tmp_path / "png", *tta,
               work=tmp_path)
    csv_format = values.get("csv_format", "auto")
    run_script("make_submission.py", "--input", tmp_path / "png", "--lr-dir", test_lr, "--output",
               tmp_path / "sub.csv", "--sample", "none", *(["--format", csv_format] if csv_format != "auto" else []),
               work=tmp_path)
    with open(tmp_path / "sub.csv") as f:
        header = next(csv.reader(f))
    assert header == (["id", "filename", "rle"] if csv_format == "rle" else ["id", "Encoded_Image"])
    assert validate_csv(tmp_path / "sub.csv", test_lr) == 2


@pytest.mark.parametrize("text, says", [
    ("[model]\nnum_block = 3\n", "[model] num_block is not a setting (did you mean num_blocks?)"),
    ("epochs = 'ten'\n", "epochs = 'ten': expected an integer"),
    ("[data]\nepochs = 3\n", "[data] epochs belongs under [optimisation], not [data]"),
    ("[training]\nepochs = 3\n", "[training] is not a section"),
    ("loss = 'l2'\n", "loss = 'l2': one of l1, mse"),
    ("ema = 1.5\n", "ema = 1.5: 0 (off) or a decay below 1"),
    ("grad_accum = 8\nbatch_size = 4\n", "grad_accum = 8: between 1 and --batch-size (4)"),
    ("epochs = [\n", "not valid TOML"),
    ("init_weights = 'HAT-S_SRx4.pth'\nattach = 'the dataset holding HAT-S'\n", "attach the dataset holding HAT-S"),
    (None, "config file not found"),
])
def test_a_bad_recipe_is_one_line_naming_the_file_and_key_and_leaves_no_run(text, says, tmp_path):
    recipe = tmp_path / "bad.toml"
    if text is not None:
        recipe.write_text(text)
    done = run_script("train.py", "--config", recipe, "--device", "cpu", work=tmp_path, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {recipe}") and says in lines[0], done.stderr
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("text, says", [("[model]\nnum_block = 3\n", "[model] num_block is not a setting"),
                                        ("ema = 1.5\n", "ema = 1.5: 0 (off) or a decay below 1"),
                                        ("init_weights = 'srresnet-x4'\n", "is shipped weights, which reach a "
                                                                           "kernel in the assets dataset")])
def test_the_kernel_builder_refuses_a_bad_recipe_before_building(text, says, tmp_path):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text)
    built = subprocess.run([sys.executable, str(REPO / "kernels" / "build.py"), "--user", "a", "--competition", "c",
                            "--config", str(recipe), "--out", str(tmp_path / "build")],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 2 and len(built.stderr.strip().splitlines()) == 1, built.stderr
    assert says in built.stderr and str(recipe) in built.stderr and not (tmp_path / "build").exists()


def test_flags_override_the_recipe_and_a_resume_needs_it_no_more(tmp_path):
    recipe = tmp_path / "mine.toml"
    recipe.write_text("[model]\nnum_blocks = 1\nchannels = 8\n[optimisation]\nepochs = 3\nlearning_rate = 3e-3\n"
                      "[data]\nval_fraction = 0.25\n")
    data = make_pairs(tmp_path / "data", count=8, hr_side=48)
    run_script("train.py", "--config", recipe, "--data", data, "--epochs", "1", "--run", "r",
               *TINY_SIZE[2:], work=tmp_path)
    config = json.loads((tmp_path / "logs" / "r" / "config.json").read_text())
    assert config["epochs"] == 1 and config["learning_rate"] == 3e-3 and config["num_blocks"] == 1
    recipe.unlink()                       # the run keeps what it needs: no --config to resume
    run_script("train.py", "--resume", tmp_path / "logs" / "r" / "last.ckpt", "--epochs", "2", work=tmp_path)
    config = json.loads((tmp_path / "logs" / "r" / "config.json").read_text())
    assert config["epochs"] == 2 and config["learning_rate"] == 3e-3 and config["config"] == str(recipe)
    shown = run_script("inspect_run.py", tmp_path / "logs" / "r", work=tmp_path).stdout
    assert f"recipe: {recipe} (sha256 {config['config_sha256'][:16]})" in shown


def test_settings_without_effect_are_named_in_one_warning(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[optimisation]\nvgg_weight = 0.5\n[model]\nsrcnn_kernels = '9-1-5'\n")
    done = run_script("train.py", "--config", recipe, "--compile", "--grad-scale-init", "1024", "--compile-mode",
                      "max-autotune", "--device", "cpu", "--data", tmp_path / "none", work=tmp_path, check=False)
    warnings = [line for line in done.stdout.splitlines() if line.startswith("warning: no effect here")]
    assert len(warnings) == 1, done.stdout
    for part in (f"{recipe}: vgg_weight (only with --loss l1+vgg)", f"{recipe}: srcnn_kernels (--model srresnet",
                 "--compile (torch.compile is used on CUDA only)", "--compile-mode (only with --compile on CUDA)",
                 "--grad-scale-init (only when the steps run in fp16)"):
        assert part in warnings[0]
    assert done.returncode == 2 and "none" in done.stderr        # then the missing data, in one line
    quiet = run_script("train.py", "--loss", "l1+vgg", "--vgg-weight", "0.5", "--device", "cpu", "--data",
                       tmp_path / "none", work=tmp_path, check=False)
    assert "no effect" not in quiet.stdout


def test_the_metric_and_select_share_one_vocabulary_and_old_configs_still_read():
    assert from_saved({"metric": "psnr+40ssim", "select": "score"}).metric == "score"
    assert from_saved({"metric": "psnr"}).metric == "psnr"
    fields = {f.name: f for f in TrainConfig.__dataclass_fields__.values()}
    assert set(fields["select"].metadata["choices"]) <= set(fields["metric"].metadata["choices"])


def plan(**change):
    base = dict(session_s=12 * 3600.0, started=0.0, time_limit_s=0.0, test_frames=500, test_size="480x270",
                predict_s=300.0, tta_asked=True, tta_s=2400.0, csv_s=60.0, margin_s=1800.0)
    return SessionPlan(**{**base, **change})


def test_the_session_plan_leaves_room_to_predict_and_drops_tta_that_does_not_fit():
    p = plan()
    assert p.tta_fits(now=600) and p.training_s(now=600) == 12 * 3600 - 600 - 2400 - 60 - 1800
    late = 12 * 3600 - 3000                                 # 50 min left: TTA (40) + CSV + margin (30) do not fit
    assert not p.tta_fits(now=late) and p.training_s(now=late) == pytest.approx(3000 - 300 - 60 - 1800)
    assert plan(tta_asked=False).training_s(now=0) == 12 * 3600 - 300 - 60 - 1800
    assert plan(time_limit_s=3600).training_s(now=0) == 3600          # --time-limit, when it is less
    assert plan(session_s=0, time_limit_s=0).training_s(now=5) == 0   # no limit at all
    assert plan().training_s(now=12 * 3600) == 0                      # nothing left: no training
    lines = plan().lines(now=late, step_s=0.5, steps_per_epoch=100)
    assert "WITHOUT the asked x8 TTA" in lines[1] and "steps at the measured 0.500 s a step" in lines[0]


def test_the_run_logs_the_plan_with_its_measured_step_time(tmp_path):
    data = make_pairs(tmp_path / "data", count=8, hr_side=48)
    make_pairs(tmp_path / "data" / "test", count=2, hr_side=48)
    done = run_script("train.py", "--data", data, "--session-hours", "1", "--margin-minutes", "58", "--predict-tta",
                      "--run", "p", *TINY_SIZE, *MODEL_SIZE, work=tmp_path).stdout
    assert "predicting 2 test frames of 12x12 with this model on cpu" in done and "(the test folder)" in done
    planned = [line for line in done.splitlines() if line.startswith("session plan: a 60.0 min session")]
    assert len(planned) == 2 and "s a step" in planned[1]
    record = json.loads((tmp_path / "logs" / "p" / "plan.json").read_text())
    assert record["tta_asked"] and record["margin_s"] == 58 * 60 and record["step_s"] > 0
    assert 0 < record["training_s"] < 2 * 60
    short = run_script("train.py", "--data", data, "--session-hours", "0.5", "--run", "q", *TINY_SIZE, *MODEL_SIZE,
                       work=tmp_path, check=False)
    assert short.returncode == 2 and "no time left to train" in short.stderr
    assert len(short.stderr.strip().splitlines()) == 1


def installed(command: str) -> Path:
    """The console command beside this interpreter (pip install -e . puts it there)."""
    path = Path(sys.executable).parent / command
    if not path.is_file():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{command} not installed, and CI=true: .ci/run installs the package (pip install -e .)")
        pytest.skip(f"{command} not installed (pip install -e .)")
    return path


def test_the_installed_package_imports_anywhere_and_its_commands_are_the_scripts(tmp_path):
    train = installed("srx4-train")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",) and not k.startswith("KAGGLE")}
    env.update(SRX4_WORK_DIR=str(tmp_path), SRX4_KAGGLE_ROOT=str(tmp_path / "no-kaggle"))
    version = subprocess.run([sys.executable, "-c", "import srx4, srx4.train.config; print(srx4.__version__)"],
                             capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert version.returncode == 0 and version.stdout.strip().count(".") == 2, version.stderr
    data = make_pairs(tmp_path / "data" / "train", count=6, hr_side=48)
    done = subprocess.run([str(train), "--config", str(REPO / "configs" / "demo.toml"), "--data", str(data),
                           *TINY_SIZE, *MODEL_SIZE, "--run", "installed"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    model = json.loads((tmp_path / "logs" / "installed" / "model.json").read_text())
    assert model["srx4_version"] == version.stdout.strip()
    bad = subprocess.run([str(installed("srx4-submission")), "--input", str(tmp_path / "nothing")],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "nothing" in bad.stderr
    shutil.rmtree(tmp_path / "logs")
