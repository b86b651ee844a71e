"""The weights shipped in weights/<name>/: each loads by its name in every CLI that takes
weights, stays within 10 MB a file, says where it came from in CARD.md, and its card's
Set5 / Set14 figures are what evaluate.py measures now."""
import re

import pandas as pd
import pytest

from conftest import REPO, run_script

SHIPPED = sorted(p.name for p in (REPO / "weights").iterdir() if (p / "best.safetensors").is_file())


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_are_what_their_card_says(name, tmp_path):
    folder = REPO / "weights" / name
    assert all((folder / f).stat().st_size <= 10 * 2**20 for f in ("best.safetensors", "model.json", "CARD.md"))
    card = (folder / "CARD.md").read_text()
    for needed in ("python src/train.py", "python src/evaluate.py", "BSDS", "trained on a CPU"):
        assert needed in card, needed
    done = run_script("evaluate.py", "--weights", name, "--data", "Set5", "Set14", "--output", tmp_path, work=tmp_path)
    table = pd.read_csv(tmp_path / "table.csv").set_index(["set", "model"])
    for dataset in ("Set5", "Set14"):
        claimed = float(re.search(rf"\| {dataset} \| {name} \| \d+ \| ([\d.]+) \|", card).group(1))   # evaluate.py's table
        measured = table.loc[(dataset, name), "psnr_y"]
        assert abs(measured - claimed) < 0.01, (dataset, measured, claimed, done.stdout[-500:])
        assert measured > table.loc[(dataset, "bicubic"), "psnr_y"] + 1.0          # well above bicubic
    shown = run_script("inspect_run.py", name, work=tmp_path).stdout
    assert name in shown
