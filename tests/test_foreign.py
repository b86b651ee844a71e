"""Models from the field through spandrel (--init-weights file.pth), weights that
carry their own model, and shipped weights by name: real CLIs on real images."""
import json
import shutil

import numpy as np
import pytest
import torch

from conftest import make_pairs, need_module, run_script
from srx4.image.codec import list_images, read_image, to_tensor, to_uint8

FINE_TUNE = ["--epochs", "1", "--batch-size", "4", "--patch-size", "16", "--patches-per-image", "2",
             "--device", "cpu", "--threads", "1", "--sample-every", "0", "--bn-refresh", "0"]


def test_foreign_model_predicts_as_spandrel_runs_it(swinir, tmp_path):
    import spandrel
    data = make_pairs(tmp_path / "data", count=3, hr_side=72)     # LR 18 x 18: SwinIR pads it to its window
    run_script("predict.py", "--weights", swinir, "--input", data / "lr", "--output", tmp_path / "sr", work=tmp_path)
    descriptor = spandrel.ModelLoader().load_from_file(str(swinir))
    for path in list_images(data / "lr"):
        ours = read_image(tmp_path / "sr" / path.name)
        theirs = to_uint8(descriptor(to_tensor(read_image(path))[None])[0])
        assert ours.shape == (72, 72, 3)
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    shown = run_script("inspect_run.py", swinir, "--json", work=tmp_path).stdout
    assert json.loads(shown)["model"]["architecture"] == "SwinIR"


@pytest.mark.slow
def test_fine_tune_foreign_model_then_predict_and_submit(swinir, tmp_path):
    data = make_pairs(tmp_path / "data", count=6, hr_side=64)
    clash = run_script("train.py", "--init-weights", swinir, "--data", data, "--channels", "8", *FINE_TUNE,
                       work=tmp_path, check=False)
    assert clash.returncode == 2 and len(clash.stderr.strip().splitlines()) == 1
    assert "SwinIR" in clash.stderr and "--channels 8" in clash.stderr
    out = run_script("train.py", "--init-weights", swinir, "--data", data, "--run", "ft", "--grad-accum", "2",
                     "--activation-checkpointing", *FINE_TUNE, work=tmp_path).stdout
    assert "activation checkpointing: 2 blocks" in out and "predicting 500 test frames of 16x16" in out
    run = tmp_path / "logs" / "ft"
    config = json.loads((run / "model.json").read_text())
    assert config["name"] == "spandrel" and config["architecture"] == "SwinIR" and config["scale"] == 4
    from safetensors.torch import load_file
    tuned, start = load_file(str(run / "best.safetensors")), torch.load(swinir)["params"]
    assert any(not torch.equal(tuned["net." + k], v) for k, v in start.items() if v.is_floating_point())
    run_script("predict.py", "--weights", run, "--input", data / "lr", "--output", tmp_path / "sr", work=tmp_path)
    assert read_image(tmp_path / "sr" / "img_000.png").shape == (64, 64, 3)
    run_script("make_submission.py", "--input", tmp_path / "sr", "--lr-dir", data / "lr", "--output",
               tmp_path / "s.csv", work=tmp_path)
    assert len((tmp_path / "s.csv").read_text().strip().splitlines()) == 1 + 6
    resumed = run_script("train.py", "--resume", run / "last.ckpt", "--epochs", "2", work=tmp_path).stdout
    assert "resuming" in resumed and "SwinIR" in (run / "train.log").read_text()


@pytest.mark.parametrize("content, says", [
    ({"conv_first.weight": torch.rand(8, 3, 3, 3), "mystery.bias": torch.rand(8)}, "knows no architecture"),
    (b"not a model at all", "not a readable model file")])
def test_unknown_model_file_is_one_line(content, says, tmp_path):
    need_module("spandrel")
    path = tmp_path / "odd.pth"
    torch.save(content, path) if isinstance(content, dict) else path.write_bytes(content)
    make_pairs(tmp_path / "data", count=1)
    for script, flags in (("predict.py", ["--weights", path, "--input", tmp_path / "data" / "lr"]),
                          ("train.py", ["--init-weights", path, "--data", tmp_path / "data", *FINE_TUNE])):
        done = run_script(script, *flags, work=tmp_path, check=False)
        assert done.returncode == 2 and says in done.stderr and "odd.pth" in done.stderr, script
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_init_weights_adopts_the_model_stored_with_them(learned, tmp_path):
    """Weights trained with the bicubic residual fine-tune as that model, under its name
    too (shipped weights); a flag asking for another model is an error."""
    _, run, test = learned
    source = json.loads((run / "model.json").read_text())
    shipped = tmp_path / "weights" / "tiny-x4"
    shipped.mkdir(parents=True)
    for name in ("best.safetensors", "model.json"):
        shutil.copyfile(run / name, shipped / name)
    env = {"SRX4_WEIGHTS_DIR": str(tmp_path / "weights")}
    data = make_pairs(tmp_path / "data", count=6, hr_side=64)
    wrong = run_script("train.py", "--init-weights", "tiny-x4", "--data", data, "--no-bicubic-residual", *FINE_TUNE,
                       work=tmp_path, env_extra=env, check=False)
    assert wrong.returncode == 2 and "--bicubic-residual False asks for another model" in wrong.stderr
    run_script("train.py", "--init-weights", "tiny-x4", "--data", data, "--run", "ft", *FINE_TUNE,
               work=tmp_path, env_extra=env)
    assert json.loads((tmp_path / "logs" / "ft" / "model.json").read_text()) == source
    run_script("predict.py", "--weights", "tiny-x4", "--input", test / "lr", "--output", tmp_path / "sr",
               work=tmp_path, env_extra=env)
    assert len(list_images(tmp_path / "sr")) == len(list_images(test / "lr"))
    missing = run_script("predict.py", "--weights", "no-such-x4", "--input", test / "lr", work=tmp_path,
                         env_extra=env, check=False)
    assert missing.returncode == 2 and "shipped names: tiny-x4" in missing.stderr
