"""The report pages (report.html of a run, of evaluate.py, of score.py) and the labelled
strips: what they show is what the run measured, and a real browser renders them."""
import json
import re
from html.parser import HTMLParser

import numpy as np

from browser import open_page
from conftest import BENCHMARKS, run_script
from srx4.image.codec import read_image, to_tensor
from srx4.runs.plots import comparison_strip, labelled_strip
from srx4.runs.html import Cases, case_crops


class Tables(HTMLParser):
    """Every <table id=...> of a page as a list of rows (header first)."""

    def __init__(self):
        super().__init__()
        self.tables, self.current, self.cell = {}, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.current = self.tables.setdefault(attrs.get("id", f"t{len(self.tables)}"), [])
        elif tag == "tr" and self.current is not None:
            self.current.append([])
        elif tag in ("td", "th") and self.current is not None:
            self.cell = ""

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.current[-1].append(self.cell)
            self.cell = None
        elif tag == "table":
            self.current = None


def read_table(page: str, table_id: str):
    parser = Tables()
    parser.feed(page)
    header, *rows = parser.tables[table_id]
    return [dict(zip(header, row)) for row in rows]


def assert_self_contained(page: str, limit_bytes: int = 2_000_000):
    assert len(page.encode()) < limit_bytes
    assert not re.search(r'(src|href)="(https?:)?//', page), "the page must not load anything from a network"


def test_run_report_lists_every_validation_image_by_gain(learned):
    work, run, _ = learned
    page = (run / "report.html").read_text()
    assert_self_contained(page)
    summary = json.loads((run / "summary.json").read_text())
    names = json.loads((run / "split.json").read_text())["val"]
    rows = read_table(page, "images")
    assert sorted(r["image"] for r in rows) == sorted(names)         # every validation image, once
    gains = [float(r["gain (dB)"]) for r in rows]
    assert gains == sorted(gains)                                    # lowest gain first
    for r in rows:
        assert abs(float(r["model psnr"]) - float(r["bicubic psnr"]) - float(r["gain (dB)"])) < 2e-4
    # the table is the final check on the best weights: its mean is summary.json's figure
    assert abs(np.mean([float(r["model psnr"]) for r in rows]) - summary["model"]["psnr"]) < 1e-3
    assert abs(np.mean([float(r["bicubic psnr"]) for r in rows]) - summary["bicubic"]["psnr"]) < 1e-3
    assert "finished: 10 of 10 epochs" in page and f"{summary['model']['psnr']:.3f} dB" in page
    # the crops shown are of the images at both ends of that ranking
    shown = re.findall(r'<div class="case"><h3>([^ <]+)', page)
    assert shown[0] == rows[0]["image"] and rows[-1]["image"] in shown
    assert len(shown) == len(set(shown)) == min(6, len(rows))
    assert page.count('class="compare"') == len(shown)


def test_run_report_renders_and_its_slider_moves_in_chromium(learned, tmp_path):
    work, run, _ = learned
    with open_page(run / "report.html") as (page, errors):
        assert page.evaluate("window.srx4.sliders") == 5
        images = page.evaluate("[...document.images].map(i => [i.alt, i.complete && i.naturalWidth])")
        assert images and all(width > 0 for _, width in images), images
        for percent in (10, 85):
            assert page.evaluate(f"window.srx4.setSlider(0, {percent})") == percent
            clip = page.evaluate("document.querySelector('.compare img.over').style.clipPath")
            assert clip == f"inset(0px {100 - percent}% 0px 0px)"
        # the slider's own control moves it too
        page.locator(".compare input").first.fill("30")
        assert page.evaluate("document.querySelector('.compare .handle').style.left") == "30%"
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        assert not errors, errors
        assert all(url.startswith(("file:", "data:")) for url in page.requests), page.requests
    shot = read_image(tmp_path / "report.png")
    assert shot.shape[0] > 2000 and shot.std() > 20          # a long page with pictures, not a blank one


def test_case_crops_are_cut_where_the_model_errs_or_gains():
    hr = read_image(BENCHMARKS / "Set14" / "HR" / "zebra.png")       # (388, 580, 3)
    lr = hr[::4, ::4]
    bicubic = hr.copy()
    bicubic[200:300, 40:140] = 0                         # bicubic is wrong here, the model right
    sr = hr.copy()
    sr[40:120, 400:480] = 255                            # the model is wrong here
    worst = case_crops(lr, bicubic, sr, hr, 4, focus="error", side=96)
    top, left, side = worst["box"]
    assert side == 96 and top <= 40 and top + side >= 120 and left <= 400 and left + side >= 480
    best = case_crops(lr, bicubic, sr, hr, 4, focus="gain", side=96)
    top, left, _ = best["box"]
    assert 200 - 96 <= top <= 300 and 40 - 96 <= left <= 140
    labels = [label for label, _, _ in best["panels"]]
    assert labels == ["LR (nearest)", "bicubic", "SR", "HR"]
    panels = {label: image for label, image, _ in best["panels"]}
    np.testing.assert_array_equal(panels["HR"], hr[top:top + 96, left:left + 96])
    np.testing.assert_array_equal(panels["LR (nearest)"][::4, ::4], lr[top // 4:top // 4 + 24, left // 4:left // 4 + 24])
    assert dict((label, psnr) for label, _, psnr in best["panels"])["SR"] == 100.0     # metrics.PSNR_CAP: identical crops


def test_cases_keep_both_ends_and_make_crops_only_for_those_kept():
    made = []
    cases = Cases(keep=2)
    gains = [0.3, -1.0, 2.0, 0.1, 1.5, -0.5, 0.0]
    for k, gain in enumerate(gains):
        cases.offer(f"i{k}", gain, lambda focus, k=k: made.append((k, focus)) or {"panels": [], "box": (0, 0, 1)})
    assert [c["name"] for c in cases.lowest()] == ["i1", "i5"]
    assert [c["name"] for c in cases.highest()] == ["i2", "i4"]
    assert len(made) < 2 * len(gains)                    # not every image is cut into crops


def test_strips_carry_labels_and_each_panels_psnr():
    hr = to_tensor(read_image(BENCHMARKS / "Set5" / "HR" / "bird.png"))
    lr = hr[:, ::4, ::4]
    strip = comparison_strip(lr, hr * 0.9, hr, 4, max_side=128)
    crops = case_crops(lr, hr, hr * 0.9, hr, 4, focus="centre", side=128)
    band = strip.shape[0] - 128
    assert strip.shape[1] == 4 * 128 + 3 * 4 and band > 0
    assert (strip[:band] < 128).any()                             # dark text on the white band
    np.testing.assert_array_equal(strip[band:, :128], crops["panels"][0][1])   # the pictures untouched below it
    # the PSNR printed is that panel's: a different figure draws a different band
    other = labelled_strip([("SR", crops["panels"][2][1], 12.34)])
    same = labelled_strip([("SR", crops["panels"][2][1], crops["panels"][2][2])])
    assert not np.array_equal(other[:band], same[:band])


def test_super_resolve_comparison_with_hr_shows_three_labelled_panels(learned, tmp_path):
    work, run, _ = learned
    image = BENCHMARKS / "Set5" / "LR_x4" / "bird.png"
    run_script("super_resolve.py", "--weights", run, image, "--output", tmp_path, "--compare",
               "--hr", BENCHMARKS / "Set5" / "HR", work=work)
    compare = read_image(tmp_path / "bird_x4_compare.png")
    assert compare.shape[1] == 3 * 288 + 2 * 8 and compare.shape[0] > 288
    np.testing.assert_array_equal(compare[-288:, 288 + 8:2 * 288 + 8], read_image(tmp_path / "bird_x4.png"))
    np.testing.assert_array_equal(compare[-288:, -288:], read_image(BENCHMARKS / "Set5" / "HR" / "bird.png"))
    assert (compare[:-288] < 128).any()
