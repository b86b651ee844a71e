"""inspect_run.py on a real run, its checkpoint and weights, on files that are none of
those, and the submissions log that ties a CSV (and its upload) to the run behind it."""
import csv
import json
import os
import stat

from conftest import run_script
from srx4.models.weights import load_model
from srx4.models import count_parameters


def test_inspect_a_run_shows_what_it_did(learned):
    work, run, _ = learned
    text = run_script("inspect_run.py", run, work=work).stdout
    model, _ = load_model(run)
    summary = json.loads((run / "summary.json").read_text())
    assert f"{count_parameters(model) / 1e6:.3f} M parameters" in text
    assert f"best validation (psnr): epoch {summary['best_epoch']}, PSNR {summary['best_subset']['psnr']:.3f}" in text
    assert "epoch 10 of 10" in text and "split 15 train / 5 val" in text
    assert f"--resume {run / 'last.ckpt'} --epochs 20" in text
    shown = json.loads(run_script("inspect_run.py", run / "last.ckpt", "--json", work=work).stdout)
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert shown["epoch"] == 10 and shown["step"] == int(rows[-1]["step"])
    assert abs(shown["best"]["psnr"] - max(float(r["val_psnr"]) for r in rows)) < 1e-4
    assert shown["parameters"] == count_parameters(model) and shown["finished"]
    weights = json.loads(run_script("inspect_run.py", run / "best.safetensors", "--json", work=work).stdout)
    assert weights["kind"] == "weights" and weights["parameters"] == shown["parameters"]


def test_files_that_are_not_runs_get_one_line(learned, tmp_path):
    import torch
    work, run, _ = learned
    torch.save({"params": torch.ones(3)}, tmp_path / "foreign.pth")
    (tmp_path / "noise.ckpt").write_bytes(os.urandom(500))
    data = (run / "best.safetensors").read_bytes()
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "best.safetensors").write_bytes(data[:len(data) // 3])
    (tmp_path / "empty").mkdir()
    for target, says in ((tmp_path / "foreign.pth", "spandrel"),     # knows no architecture / is not installed
                         (tmp_path / "noise.ckpt", "not a readable checkpoint"),
                         (tmp_path / "cut" / "best.safetensors", "not readable as srx4 weights"),
                         (tmp_path / "cut", "not readable as srx4 weights"),
                         (tmp_path / "empty", "not a training run folder"),
                         (tmp_path / "absent", "no such run folder")):
        done = run_script("inspect_run.py", target, work=work, check=False)
        assert done.returncode == 2 and done.stdout == "", target
        assert done.stderr.count("\n") == 1 and says in done.stderr and str(target) in done.stderr, done.stderr


def test_a_csv_and_its_upload_are_traced_to_the_run(learned, tmp_path):
    work, run, test = learned
    pngs = tmp_path / "png"
    run_script("predict.py", "--weights", run, "--input", test / "lr", "--output", pngs, "--device", "cpu", work=work)
    made = run_script("make_submission.py", "--input", pngs, "--lr-dir", test / "lr", "--output", tmp_path / "s.csv",
                      "--sample", "none", work=work)
    assert "made by run learned" in made.stdout
    # Kaggle itself cannot be reached from here: a `kaggle` on PATH that records what it was asked
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "kaggle"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'asked.txt'}\necho Successfully submitted\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}
    run_script("submit.py", "--competition", "gnr", "--csv", tmp_path / "s.csv", "--lr-dir", test / "lr",
               "-m", "first try", work=work, env_extra=env)
    asked = (tmp_path / "asked.txt").read_text()
    assert "competitions submit gnr" in asked and "first try [run learned]" in asked
    with open(work / "submissions" / "log.csv") as f:
        log = [row for row in csv.DictReader(f) if row["csv"] == str((tmp_path / "s.csv").resolve())]
    assert [row["event"] for row in log] == ["csv", "submitted"]
    assert log[0]["run"] == log[1]["run"] == "learned" and log[0]["sha256"] == log[1]["sha256"]
    assert log[0]["weights"] == str((run / "best.safetensors").resolve()) and log[0]["rows"] == "4"
    shown = json.loads(run_script("inspect_run.py", run, "--json", work=work).stdout)
    assert "first try [run learned]" in shown["submissions"]["submitted"]
    # a CSV changed after it was made is not passed off as the run's
    with open(tmp_path / "s.csv", "a") as f:
        f.write("\n")
    done = run_script("submit.py", "--competition", "gnr", "--csv", tmp_path / "s.csv", "--skip-validation",
                      "-m", "edited", work=work, env_extra=env)
    assert "cannot be traced to a run" in done.stderr and "[run" not in (tmp_path / "asked.txt").read_text()
