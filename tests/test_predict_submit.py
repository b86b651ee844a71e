"""predict -> make_submission -> score -> submit, as a user runs them, on real images."""
import base64
import csv
import json

import numpy as np
import pytest

from conftest import SHARED, TINY, make_pairs, needs_shared, run_script
from srx4.image.codec import read_image
from srx4.submit.submission import SubmissionError, validate_csv


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained run plus a test folder (LR and HR) of real crops."""
    work = tmp_path_factory.mktemp("work")
    data = make_pairs(work / "data" / "train", count=8)
    test = make_pairs(work / "data" / "test", count=3, hr_side=96)
    run_script("train.py", "--data", data, *TINY, "--epochs", "1", "--run", "t", "--bicubic-residual", work=work)
    return work, test


def test_predict_writes_exact_size_pngs_and_resumes(trained):
    work, test = trained
    out = work / "pred"
    first = run_script("predict.py", "--input", test / "lr", "--output", out, "--device", "cpu", work=work)
    assert "3 images" in first.stdout and "0 already done" in first.stdout
    for lr_path in sorted((test / "lr").iterdir()):
        sr = read_image(out / lr_path.name)
        assert sr.shape == (96, 96, 3)
    manifest = json.loads((out / ".srx4-weights.json").read_text())
    assert manifest["weights"].endswith("best.safetensors")
    # an interrupted run: one output missing -> only that one is redone
    (out / "img_001.png").unlink()
    again = run_script("predict.py", "--input", test / "lr", "--output", out, "--device", "cpu", work=work)
    assert "2 already done" in again.stdout and (out / "img_001.png").is_file()
    # other weights are refused for the same folder
    refused = run_script("predict.py", "--model", "bicubic", "--input", test / "lr", "--output", out, work=work,
                         check=False)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr


def test_unreadable_input_is_named_and_the_rest_still_run(trained, tmp_path):
    work, test = trained
    inputs = tmp_path / "lr"
    inputs.mkdir()
    for p in (test / "lr").iterdir():
        (inputs / p.name).write_bytes(p.read_bytes())
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    done = run_script("predict.py", "--input", inputs, "--output", tmp_path / "out", "--device", "cpu",
                      work=work, check=False)
    assert done.returncode == 1 and "broken.png" in done.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 3


@needs_shared("samples/gnr638")
def test_predict_rgba_competition_frames_to_1080p(tmp_path):
    lr_dir = SHARED / "samples" / "gnr638" / "lr"
    run_script("predict.py", "--model", "bicubic", "--input", lr_dir, "--output", tmp_path / "rgb", work=tmp_path)
    run_script("predict.py", "--model", "bicubic", "--input", lr_dir, "--output", tmp_path / "rgba", "--keep-alpha",
               work=tmp_path)
    for name in ("00029.png", "00034.png"):
        assert read_image(tmp_path / "rgb" / name, keep_alpha=True).shape == (1080, 1920, 3)
        assert read_image(tmp_path / "rgba" / name, keep_alpha=True).shape == (1080, 1920, 4)


def test_csv_round_trip_is_bit_exact_and_validated(trained, tmp_path):
    work, test = trained
    pngs = tmp_path / "png"
    run_script("predict.py", "--input", test / "lr", "--output", pngs, "--device", "cpu", work=work)
    out_csv = tmp_path / "sub.csv"
    done = run_script("make_submission.py", "--input", pngs, "--lr-dir", test / "lr", "--output", out_csv, "--zip",
                      work=work)
    assert "3 rows" in done.stdout and (tmp_path / "sub.csv.zip").is_file()
    with open(out_csv, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "Encoded_Image"] and [r[0] for r in rows[1:]] == ["img_000.png", "img_001.png", "img_002.png"]
    for row_id, encoded in rows[1:]:
        assert base64.b64decode(encoded) == (pngs / row_id).read_bytes()
    assert validate_csv(out_csv, test / "lr") == 3

    # a missing prediction stops it, naming the file, and leaves no CSV behind
    (pngs / "img_002.png").rename(tmp_path / "moved.png")
    missing = run_script("make_submission.py", "--input", pngs, "--lr-dir", test / "lr", "--output",
                         tmp_path / "new.csv", work=work, check=False)
    assert missing.returncode == 1 and "img_002" in missing.stderr and not (tmp_path / "new.csv").exists()
    allowed = run_script("make_submission.py", "--input", pngs, "--lr-dir", test / "lr", "--output",
                         tmp_path / "new.csv", "--allow-missing", work=work)
    assert "2 rows" in allowed.stdout
    # a wrong size
    (tmp_path / "moved.png").rename(pngs / "img_002.png")
    (pngs / "img_002.png").write_bytes((test / "lr" / "img_002.png").read_bytes())
    wrong = run_script("make_submission.py", "--input", pngs, "--lr-dir", test / "lr", "--output",
                       tmp_path / "new2.csv", work=work, check=False)
    assert wrong.returncode == 1 and "img_002" in wrong.stderr and "is not 4 x" in wrong.stderr


def test_validator_catches_missing_id_and_undecodable_row(trained, tmp_path):
    _, test = trained
    good = base64.b64encode((test / "hr" / "img_000.png").read_bytes()).decode()
    def write(rows):
        path = tmp_path / "x.csv"
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([("id", "Encoded_Image"), *rows])
        return path
    with pytest.raises(SubmissionError, match="no row"):
        validate_csv(write([("img_000.png", good)]), test / "lr")
    with pytest.raises(SubmissionError, match="img_001"):
        validate_csv(write([("img_000.png", good), ("img_001.png", base64.b64encode(b"junk").decode()),
                            ("img_002.png", good)]), test / "lr")


def test_score_agrees_with_scikit_image_and_its_bicubic_line_is_predicts(trained, tmp_path):
    """score.py's figures against scikit-image, and its bicubic line against the PNGs
    predict.py --model bicubic writes (the same values; that a model beats bicubic is
    test_learned.py's)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity   # 1.2 s to import: only here
    work, test = trained
    pngs = tmp_path / "png"
    run_script("predict.py", "--model", "bicubic", "--input", test / "lr", "--output", pngs, work=work)
    done = run_script("score.py", pngs, "--hr", test / "hr", "--output", tmp_path / "s.csv", work=work)
    assert "bicubic" in done.stdout and "3 images, x4" in done.stdout
    with open(tmp_path / "s.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for row in rows:
        sr, hr = read_image(pngs / row["id"]) / 255, read_image(test / "hr" / row["id"]) / 255
        assert abs(float(row["psnr"]) - peak_signal_noise_ratio(hr, sr, data_range=1)) < 1e-8
        assert abs(float(row["ssim"]) - structural_similarity(hr, sr, data_range=1, channel_axis=2)) < 1e-8
        for column in ("psnr", "ssim", "score", "psnr_y", "ssim_y"):
            assert float(row[column]) == float(row[f"bicubic_{column}"]), column


def test_submit_without_credentials_prints_one_line(trained, tmp_path):
    work, test = trained
    env = {"HOME": str(tmp_path), "KAGGLE_CONFIG_DIR": str(tmp_path / "nokaggle")}
    pngs = tmp_path / "png"
    run_script("predict.py", "--model", "bicubic", "--input", test / "lr", "--output", pngs, work=work)
    run_script("make_submission.py", "--input", pngs, "--lr-dir", test / "lr", "--output", tmp_path / "s.csv", work=work)
    done = run_script("submit.py", "--competition", "some-comp", "--csv", tmp_path / "s.csv", "--lr-dir", test / "lr",
                      work=work, env_extra=env, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "KAGGLE_USERNAME" in done.stderr or "kaggle command is not on PATH" in done.stderr


def test_evaluate_bicubic_reproduces_the_published_table(tmp_path):
    # the bare names find the sets shipped in benchmarks/, as the README's command has them
    run_script("evaluate.py", "--model", "bicubic", "--data", "Set5", "Set14", "--output", tmp_path, work=tmp_path,
               cwd=tmp_path)
    with open(tmp_path / "table.csv") as f:
        rows = {r["set"]: r for r in csv.DictReader(f)}
    assert abs(float(rows["Set5"]["psnr_y"]) - 28.42) <= 0.02 and abs(float(rows["Set5"]["ssim_y"]) - 0.8104) <= 0.003
    assert abs(float(rows["Set14"]["psnr_y"]) - 26.00) <= 0.02 and abs(float(rows["Set14"]["ssim_y"]) - 0.7027) <= 0.003
    assert (tmp_path / "table.md").read_text().count("|") > 10


def test_prepare_data_makes_pairs_train_accepts(tmp_path):
    from conftest import photo_crops
    from srx4.image.codec import write_png
    hr_dir = tmp_path / "hr_src"
    for k, photo in enumerate(photo_crops(4, 128)):
        write_png(hr_dir / f"photo_{k}.png", photo)
    write_png(hr_dir / "tiny.png", photo_crops(1, 40)[0])                 # smaller than --crop-size
    first = run_script("prepare_data.py", "--hr", hr_dir, "--out", tmp_path / "pairs", "--crop-size", "64",
                       "--step", "64", "--workers", "2", work=tmp_path)
    assert "tiny.png (40x40) is smaller than --crop-size 64" in first.stderr
    assert "5 HR images -> 16 new pairs" in first.stdout and "1 smaller than --crop-size 64" in first.stdout
    names = sorted(p.name for p in (tmp_path / "pairs" / "lr").iterdir())
    assert len(names) == 16 and all("_s" in n for n in names) and not any("tiny" in n for n in names)
    again = run_script("prepare_data.py", "--hr", hr_dir, "--out", tmp_path / "pairs", "--crop-size", "64",
                       "--workers", "2", work=tmp_path)
    assert "0 new pairs" in again.stdout
    run_script("train.py", "--data", tmp_path / "pairs", *TINY, "--epochs", "1", "--run", "p", work=tmp_path)
    assert (tmp_path / "logs" / "p" / "best.safetensors").is_file()


def test_super_resolve_one_image_with_comparison(trained, tmp_path):
    work, test = trained
    done = run_script("super_resolve.py", "--weights", work / "logs" / "t", test / "lr" / "img_000.png",
                      "--output", tmp_path, "--compare", work=work)
    assert "img_000_x4.png" in done.stdout
    assert read_image(tmp_path / "img_000_x4.png").shape == (96, 96, 3)
    compare = read_image(tmp_path / "img_000_x4_compare.png")
    assert compare.shape[1] == 200 and compare.shape[0] > 96          # bicubic | SR under their labels
    # with the HR: the figures on the terminal too, the same as score.py's for that PNG; no --weights: says
    # it takes the last run, and how to take the shipped weights instead
    done = run_script("super_resolve.py", test / "lr" / "img_000.png", "--output", tmp_path / "h", "--compare",
                      "--hr", test / "hr", work=work)
    assert "; the run train.py finished last (logs/last_run.json); --weights srresnet-x4 for the shipped" in done.stdout
    line = next(x for x in done.stdout.splitlines() if x.startswith("img_000.png: PSNR"))
    (tmp_path / "named").mkdir()
    (tmp_path / "named" / "img_000.png").write_bytes((tmp_path / "h" / "img_000_x4.png").read_bytes())
    scored = run_script("score.py", tmp_path / "named", "--hr", test / "hr", "--lr", test / "lr", "--protocol",
                        "competition", "--output", tmp_path / "s.csv", work=work)
    import pandas as pd
    row = pd.read_csv(tmp_path / "s.csv").iloc[0]
    assert f"PSNR {row['psnr']:.3f} dB vs bicubic {row['bicubic_psnr']:.3f} dB" in line, (line, scored.stdout)


def test_super_resolve_without_a_run_uses_the_shipped_recommended_weights(trained, tmp_path):
    """No --weights and no run of one's own: the first shipped of paths.RECOMMENDED, srresnet-x4
    before span-x4 (here both are a trained run's files in a weights folder of its own,
    SRX4_WEIGHTS_DIR), said so; with none shipped, one line. predict.py and evaluate.py read
    --weights the same way (srx4.predict.choose)."""
    import shutil
    work, test = trained
    for folder in ("span-x4", "srresnet-x4"):
        (tmp_path / "weights" / folder).mkdir(parents=True)
        for name in ("best.safetensors", "model.json"):
            shutil.copy(work / "logs" / "t" / name, tmp_path / "weights" / folder / name)
    shipped = tmp_path / "weights" / "srresnet-x4"
    fresh = tmp_path / "fresh"                                    # a work folder without logs/last_run.json
    done = run_script("super_resolve.py", test / "lr" / "img_000.png", "--output", tmp_path / "out", work=fresh,
                      env_extra={"SRX4_WEIGHTS_DIR": str(tmp_path / "weights")})
    said = f"weights: {shipped / 'best.safetensors'}; no run of yours found: the shipped weights (see {shipped / 'CARD.md'})"
    assert said in done.stdout
    assert read_image(tmp_path / "out" / "img_000_x4.png").shape == (96, 96, 3)
    env = {"SRX4_WEIGHTS_DIR": str(tmp_path / "weights")}
    predicted = run_script("predict.py", "--input", test / "lr", "--output", tmp_path / "png", work=fresh, env_extra=env)
    assert said in predicted.stdout
    np.testing.assert_array_equal(read_image(tmp_path / "png" / "img_000.png"), read_image(tmp_path / "out" / "img_000_x4.png"))
    evaluated = run_script("evaluate.py", "--data", "Set5", "--output", tmp_path / "eval", work=fresh, env_extra=env)
    assert said in evaluated.stdout and "| Set5 | srresnet-x4 |" in evaluated.stdout
    for script, args in (("super_resolve.py", [test / "lr" / "img_000.png"]), ("predict.py", []),
                         ("evaluate.py", ["--data", "Set5"])):
        none = run_script(script, *args, work=fresh, check=False, env_extra={"SRX4_WEIGHTS_DIR": str(tmp_path / "empty")})
        assert none.returncode == 2 and "error: no weights found: pass --weights" in none.stderr, (script, none.stderr)
        assert "Traceback" not in none.stderr


def test_local_validation_score_from_the_split(trained):
    work, _ = trained
    run = work / "logs" / "t"
    run_script("predict.py", "--weights", run, "--val-of", run, "--device", "cpu", work=work)
    val_png = work / "submissions" / "t" / "val_png"
    names = json.loads((run / "split.json").read_text())["val"]
    assert sorted(p.name for p in val_png.glob("*.png")) == sorted(names)
    done = run_script("score.py", val_png, "--hr", work / "data" / "train" / "hr", work=work)
    assert f"{len(names)} images" in done.stdout and "model:" in done.stdout


def test_hostile_test_folder_predicts_every_decodable_image(tmp_path):
    from test_train_cli import hostile_folder
    lr_dir = hostile_folder(tmp_path / "h") / "lr"
    done = run_script("predict.py", "--model", "bicubic", "--input", lr_dir, "--output", tmp_path / "out",
                      work=tmp_path, check=False)
    assert done.returncode == 1
    for bad in ("zero.png", "text.png"):
        assert bad in done.stderr
    for name in ("grey mode.png", "palette_é.png", "rgba.png", "deep16.png", "jpeg_bytes.png", "img_000.png"):
        lr = read_image(lr_dir / name)
        assert read_image(tmp_path / "out" / name).shape == (lr.shape[0] * 4, lr.shape[1] * 4, 3), name


def test_small_crops_are_batched_by_size_with_the_outputs_of_one_at_a_time(trained, tmp_path):
    """SRGB-style test sets of small LR crops go many to a forward pass (auto_batch), with the
    same PNGs as one image per pass; big frames still go one at a time on a CPU."""
    import numpy as np
    import torch
    from srx4.models import build_model
    from srx4.predict.inference import auto_batch
    spec = build_model({"name": "srresnet", "scale": 4}).spec
    cpu = torch.device("cpu")
    assert auto_batch(spec, 64, 64, cpu) == 480 * 270 // (64 * 64)
    assert auto_batch(spec, 270, 480, cpu) == 1 and auto_batch(spec, 16, 16, cpu) == 64
    work, _ = trained
    crops = make_pairs(tmp_path / "crops", count=12, hr_side=64)
    outs = {}
    for flags in ((), ("--batch-size", "1")):
        out = tmp_path / f"sr{len(flags)}"
        done = run_script("predict.py", "--input", crops / "lr", "--output", out, "--device", "cpu", *flags, work=work)
        assert "wrote 12 PNGs" in done.stdout and ("images/s" in done.stdout or "s an image" in done.stdout)
        outs[flags] = np.stack([read_image(p).astype(int) for p in sorted(out.glob("*.png"))])
    diff = np.abs(outs[()] - outs[("--batch-size", "1")])
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999


def test_a_png_folder_remembers_its_lr_folder_for_the_csv_and_the_bicubic_line(trained, tmp_path):
    """predict.py --input X --output P records X in P: make_submission.py --input P checks the
    PNGs against X with no --lr-dir, score.py P --hr H (no lr/ beside H) takes its bicubic line
    from X; where nothing names an LR folder, score.py says so in one line."""
    import shutil
    work, test = trained
    lr = tmp_path / "my_lr"
    shutil.copytree(test / "lr", lr)
    hr = tmp_path / "truth" / "hr_only"
    shutil.copytree(test / "hr", hr)
    run_script("predict.py", "--input", lr, "--output", tmp_path / "P", work=work)
    done = run_script("make_submission.py", "--input", tmp_path / "P", "--sample", "none", "--output",
                      tmp_path / "s.csv", work=work)
    assert f"checking the PNGs against the LR images in {lr.resolve()} (the folder predict.py read)" in done.stdout
    scored = run_script("score.py", tmp_path / "P", "--hr", hr, work=work).stdout
    assert f"bicubic baseline from the LR images in {lr.resolve()}" in scored and " vs bicubic " in scored
    bare = tmp_path / "bare"
    shutil.copytree(tmp_path / "P", bare, ignore=shutil.ignore_patterns(".srx4-weights.json"))
    alone = run_script("score.py", bare, "--hr", hr, work=work).stdout
    assert "no LR folder found" in alone and "no bicubic baseline" in alone and " vs bicubic " not in alone
    shutil.rmtree(lr)                                 # the recorded folder gone: a sentence, nothing written
    gone = run_script("make_submission.py", "--input", tmp_path / "P", "--sample", "none", "--output",
                      tmp_path / "t.csv", work=work, check=False)
    assert gone.returncode == 2 and len(gone.stderr.strip().splitlines()) == 1 and "--lr-dir" in gone.stderr
    assert not (tmp_path / "t.csv").exists()
