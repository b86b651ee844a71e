"""A model that really learned (the session's `learned` run): it beats bicubic on images
it never saw, through the real CLIs, and best.safetensors holds the best epoch's weights."""
import csv
import json

import pandas as pd

from browser import open_page
from conftest import run_script
from test_report import read_table


def test_trained_model_beats_bicubic_on_held_out_images(learned, tmp_path):
    work, run, test = learned
    run_script("predict.py", "--weights", run, "--input", test / "lr", "--output", tmp_path / "png",
               "--device", "cpu", work=work)
    run_script("score.py", tmp_path / "png", "--hr", test / "hr", "--output", tmp_path / "scores.csv", work=work)
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == 4 and set(scores["id"]) == {"baboon.png", "comic.png", "pepper.png", "zebra.png"}
    for column in ("psnr", "score", "psnr_y"):          # both protocols
        gain = scores[column].mean() - scores[f"bicubic_{column}"].mean()
        assert gain > 0.1, (column, gain)
    page = (tmp_path / "scores_report.html").read_text()          # score.py's page beside its CSV
    rows = read_table(page, "images")
    assert [r["id"] for r in rows] == list(scores.assign(g=scores["psnr"] - scores["bicubic_psnr"])
                                           .sort_values("g")["id"])
    assert page.count('class="compare"') == 4


def test_best_weights_are_the_best_epochs(learned):
    work, run, _ = learned
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10
    best = max(rows, key=lambda r: float(r["val_psnr"]))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_epoch"] == int(best["epoch"])
    # re-score best.safetensors on the validation images, as a user would: predict, then score
    run_script("predict.py", "--weights", run, "--val-of", run, "--device", "cpu", work=work)
    val_png = work / "submissions" / "learned" / "val_png"
    names = json.loads((run / "split.json").read_text())["val"]
    assert sorted(p.name for p in val_png.glob("*.png")) == sorted(names)
    run_script("score.py", val_png, "--hr", work / "data" / "train" / "hr", "--output", work / "val.csv", work=work)
    rescored = pd.read_csv(work / "val.csv")["psnr"].mean()
    assert abs(rescored - float(best["val_psnr"])) < 2e-3, (rescored, best["val_psnr"])
    # the check can tell epochs apart: the other epochs' weights would score differently
    others = [float(r["val_psnr"]) for r in rows if r is not best]
    assert sum(abs(rescored - p) > 2e-3 for p in others) >= len(others) - 2


def test_evaluate_runs_the_model_on_both_sets_grey_image_included(learned, tmp_path):
    work, run, _ = learned
    done = run_script("evaluate.py", "--weights", run, "--data", "Set5", "Set14", "--output", tmp_path, work=work)
    assert "paper: Y (BT.601), 4 px shaved" in done.stdout
    table = pd.read_csv(tmp_path / "table.csv").set_index(["set", "model"])
    images = pd.read_csv(tmp_path / "images.csv")
    assert len(images) == 2 * (5 + 14) and "bridge.png" in set(images["image"])      # bridge is grey
    for name in ("Set5", "Set14"):
        assert table.loc[(name, "learned"), "psnr_y"] > table.loc[(name, "bicubic"), "psnr_y"]
    assert abs(table.loc[("Set5", "bicubic"), "psnr_y"] - 28.43) < 0.01
    rows = read_table((tmp_path / "report.html").read_text(), "images")      # evaluate.py's page
    assert len(rows) == 5 + 14 and [float(r["gain (dB)"]) for r in rows] == sorted(float(r["gain (dB)"]) for r in rows)
    with open_page(tmp_path / "report.html") as (page, errors):
        assert page.evaluate("window.srx4.sliders") == 6
        assert page.evaluate("window.srx4.setSlider(5, 70)") == 70
        assert not errors, errors


def test_an_ensemble_predicts_the_mean_of_its_members(learned, tmp_path):
    """predict.py --weights a b: the PNG is the rounded mean of both models' outputs; evaluate.py
    scores the same ensemble; the CSV made from it is logged against both runs."""
    import numpy as np
    from conftest import TINY, make_pairs
    from srx4.models.weights import load_model
    from srx4.image.codec import read_image, to_tensor, to_uint8
    from srx4.predict.inference import super_resolve
    work, run, test = learned
    other = make_pairs(tmp_path / "other", count=6)
    run_script("train.py", "--data", other, *TINY, "--epochs", "1", "--run", "tiny_member", work=work)
    member = work / "logs" / "tiny_member"
    done = run_script("predict.py", "--weights", run, member, "--no-amp", "--input", test / "lr", "--output",
                      tmp_path / "png", work=work)
    assert "an ensemble of 2" in done.stdout
    lr = to_tensor(read_image(test / "lr" / "zebra.png"))[None]
    outputs = [super_resolve(load_model(w)[0], lr, tile=0, amp=False)[0] for w in (run, member)]
    expected = to_uint8((outputs[0] + outputs[1]) / 2)
    got = read_image(tmp_path / "png" / "zebra.png").astype(int)
    assert np.abs(got - expected.astype(int)).max() <= 1 and (got == expected).mean() > 0.999
    assert not np.array_equal(to_uint8(outputs[0]), to_uint8(outputs[1]))       # the members differ
    run_script("make_submission.py", "--input", tmp_path / "png", "--lr-dir", test / "lr", "--sample", "none",
               "--output", tmp_path / "s.csv", work=work)
    log = pd.read_csv(work / "submissions" / "log.csv")
    assert log.iloc[-1]["run"] == "learned+tiny_member"
    table = run_script("evaluate.py", "--weights", run, member, "--data", "Set5", "--output", tmp_path / "e",
                       work=work).stdout
    assert "| Set5 | learned+tiny_member | 5 |" in table


def test_fine_tuning_keeps_the_start_weights_when_no_epoch_beats_them(learned, tmp_path):
    """A fine-tune whose epochs only do worse (a learning rate far too high) ends with the start
    weights as its best, not its least bad epoch: it never falls below where it started."""
    from safetensors.torch import load_file
    work, run, _ = learned
    data = work / "data" / "train"
    out = run_script("train.py", "--init-weights", run, "--data", data, "--learning-rate", "0.5", "--warmup-steps",
                     "0", "--epochs", "1", "--batch-size", "8", "--patch-size", "16", "--patches-per-image", "4",
                     "--val-fraction", "0.25", "--device", "cpu", "--sample-every", "0", "--ema", "0",
                     "--run", "wild", work=tmp_path).stdout
    assert "start weights (--init-weights) on the validation images" in out
    summary = json.loads((tmp_path / "logs" / "wild" / "summary.json").read_text())
    with open(tmp_path / "logs" / "wild" / "metrics.csv") as f:
        epoch_psnr = float(next(csv.DictReader(f))["val_psnr"])
    assert summary["best_epoch"] == 0 and summary["best_subset"]["psnr"] > epoch_psnr
    assert "at the start weights (no epoch beat them)" in out
    start, kept = load_file(str(run / "best.safetensors")), load_file(str(tmp_path / "logs/wild/best.safetensors"))
    assert all((start[k] == kept[k]).all() for k in start)
    assert not summary["worse_than_bicubic"]
