"""report.html: one self-contained page per run, evaluation or scoring.

A page is a title, a few headline figures, and sections: pictures (PNG inline),
tables, and *cases*: the images where the model gains least and most over
bicubic, each as labelled LR | bicubic | SR | HR crops (JPEG inline, cut where
the model errs most, or gains most) and a slider over SR vs HR. No network, no
CDN: the page opens from a Kaggle kernel's output or offline. The slider is
driven by the page's own script, `window.srx4.setSlider(case, percent)`.

    cases = Cases(keep=3)
    cases.offer(name, gain_db, lambda: case_crops(lr, bicubic, sr, hr, scale))
    write_report(path, "run a", [("Curves", image_html(png)), ("Images", table_html(rows))], cases=cases)
"""
import base64
import heapq
import html
import itertools
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from srx4.core.io import atomic_write_text
from srx4.image.metrics import psnr_uint8

CROP_SIDE = 192          # HR pixels per side of a case's crops
JPEG_QUALITY = 92
PANELS = ("LR (nearest)", "bicubic", "SR", "HR")


def _as_chw(image) -> torch.Tensor:
    """uint8 (H, W[, 3]) numpy or float (3, H, W) tensor in [0, 1] -> float32 (3, H, W) in [0, 1]."""
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(image.reshape(image.shape[0], image.shape[1], -1)).permute(2, 0, 1).float() / 255
    image = image.float().cpu()
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def case_crops(lr, bicubic, sr, hr, scale: int, focus: str = "error", side: int = CROP_SIDE) -> dict:
    """The four panels of one case, cut at the same place: where the model's error is
    largest (focus "error"), where it gains most over bicubic ("gain"), or the centre.
    Images: uint8 (H, W[, 3]) arrays or float (3, H, W) tensors in [0, 1].
    Returns {"panels": [(label, uint8 HWC crop, PSNR or None)], "box": (top, left, side), "size": (h, w)}."""
    lr, bicubic, sr, hr = map(_as_chw, (lr, bicubic, sr, hr))
    h, w = hr.shape[1:]
    side = max(scale, min(side, h, w) // scale * scale)
    if focus == "centre":
        top, left = (h - side) // 2 // scale * scale, (w - side) // 2 // scale * scale
    else:
        err_sr = (sr - hr).abs().mean(0)
        focus_map = err_sr if focus == "error" else (bicubic - hr).abs().mean(0) - err_sr
        stride = max(scale, side // 4 // scale * scale)
        pooled = F.avg_pool2d(focus_map[None, None], side, stride)[0, 0]     # (rows, cols) of window means
        row, col = divmod(int(pooled.argmax()), pooled.shape[1])
        top, left = row * stride, col * stride
    box = (slice(None), slice(top, top + side), slice(left, left + side))
    lr_crop = lr[:, top // scale:(top + side) // scale, left // scale:(left + side) // scale]
    nearest = lr_crop.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    to_panel = lambda image: image.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()  # noqa: E731
    hr_panel = to_panel(hr[box])                                              # (side, side, 3) uint8
    panels = []
    for label, image in zip(PANELS, (nearest, bicubic[box], sr[box])):
        panel = to_panel(image)
        panels.append((label, panel, psnr_uint8(panel, hr_panel)))
    panels.append(("HR", hr_panel, None))
    return {"panels": panels, "box": (top, left, side), "size": (h, w)}


class Cases:
    """The `keep` images with the lowest and the `keep` with the highest gain, their crops
    made only for those that get in (so a scorer can stream thousands of images)."""

    def __init__(self, keep: int = 3):
        self.keep, self.low, self.high = keep, [], []
        self.offered = None           # images offered to both ends (None: each end chosen by the caller)
        self._order = itertools.count()

    def offer(self, name: str, gain: float, make_crops, sides=("low", "high"), **figures):
        """make_crops(focus) -> case_crops(...); figures: shown beside the name; sides: the
        rankings the image may enter (both when streaming)."""
        if self.keep <= 0:
            return
        n = next(self._order)
        if len(sides) == 2:
            self.offered = (self.offered or 0) + 1
        for side, heap, sign, focus in (("low", self.low, -1.0, "error"), ("high", self.high, 1.0, "gain")):
            if side not in sides:
                continue
            key = sign * gain
            if len(heap) < self.keep or key > heap[0][0]:
                item = (key, n, {"name": name, "gain": gain, "figures": figures, **make_crops(focus)})
                (heapq.heappush if len(heap) < self.keep else heapq.heapreplace)(heap, item)

    def _counts(self):
        """How many to show at each end: `keep`, or with fewer than 2 x keep images seen,
        half each, so that no image is shown at both ends."""
        seen = len({c["name"] for _, _, c in self.low + self.high}) if self.offered is None else self.offered
        low = min(self.keep, len(self.low), (seen + 1) // 2)
        return low, min(self.keep, len(self.high), seen - low)

    def lowest(self):
        """The kept images with the lowest gain, lowest first."""
        return [c for _, _, c in sorted(self.low, key=lambda t: -t[0])][:self._counts()[0]]

    def highest(self):
        """The kept images with the highest gain, highest first."""
        return [c for _, _, c in sorted(self.high, key=lambda t: -t[0])][:self._counts()[1]]


def jpeg_uri(image: np.ndarray) -> str:
    """uint8 RGB (H, W, 3) -> data URI of a JPEG."""
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode()


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def image_html(data: bytes, alt: str) -> str:
    return f'<img class="figure" alt="{html.escape(alt)}" src="{png_uri(data)}">'


def _cell(value, fmt):
    if isinstance(value, float):
        return "" if value != value else format(value, fmt)
    return html.escape(str(value))


def table_html(rows, columns=None, formats=None, signed=(), table_id="") -> str:
    """rows: list of dicts. formats: column -> format spec for floats (default .4f);
    signed: columns shown red below zero and green above."""
    rows = list(rows)
    if not rows:
        return "<p>(none yet)</p>"
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))     # every key, first-seen order
    formats = formats or {}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c, "")
            try:
                value = float(value) if isinstance(value, str) and value.strip() and c in formats else value
            except ValueError:
                pass
            style = ""
            if c in signed and isinstance(value, (int, float)) and value == value:
                style = ' class="neg"' if value < 0 else ' class="pos"'
            cells.append(f"<td{style}>{_cell(value, formats.get(c, '.4f'))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return f'<table{ident}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def config_html(config: dict) -> str:
    rows = [{"setting": k, "value": v} for k, v in config.items() if v not in ("", None)]
    return f"<details><summary>{len(rows)} settings</summary>{table_html(rows)}</details>"


def _case_html(index: int, case: dict) -> str:
    top, left, side = case["box"]
    height, width = case["size"]
    figures = "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in case["figures"].items())
    panels = []
    for label, image, psnr in case["panels"]:
        caption = label + (f" · {psnr:.2f} dB" if psnr is not None and np.isfinite(psnr) else "")
        key = label.split()[0].lower()
        panels.append(f'<figure><img id="case{index}-{key}" src="{jpeg_uri(image)}" alt="{html.escape(caption)}">'
                      f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return (f'<div class="case"><h3>{html.escape(case["name"])} <span class="{"neg" if case["gain"] < 0 else "pos"}">'
            f'{case["gain"]:+.3f} dB</span> <small>{html.escape(figures)}; crop {side}×{side} at x {left}, y {top} of {width}×{height}'
            f'</small></h3><div class="row"><div class="strip">{"".join(panels)}</div>'
            f'<div class="compare" data-case="{index}"><img class="under" data-from="case{index}-hr" alt="HR">'
            f'<img class="over" data-from="case{index}-sr" alt="SR"><div class="handle"></div>'
            f'<span class="tag left">SR</span><span class="tag right">HR</span>'
            f'<input type="range" min="0" max="100" value="50" aria-label="SR | HR"></div></div></div>')


def cases_html(cases: Cases) -> list:
    """Two sections: the images where the model gains least, and most."""
    lowest, highest = cases.lowest(), cases.highest()
    sections = []
    if lowest:
        sections.append(("Where the model gains least (crop: its largest error)",
                         "".join(_case_html(k, c) for k, c in enumerate(lowest))))
    if highest:
        sections.append(("Where the model gains most (crop: its largest gain)",
                         "".join(_case_html(len(lowest) + k, c) for k, c in enumerate(highest))))
    return sections


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
h1{margin-bottom:.2em} .sub{color:#666;margin-top:0} h2{border-bottom:1px solid #ddd;padding-bottom:.2em}
.cards{display:flex;gap:1em;flex-wrap:wrap} .card{border:1px solid #ddd;border-radius:6px;padding:.5em 1em}
.card b{display:block;font-size:1.4em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0} th,td{border:1px solid #ddd;padding:2px 6px;text-align:right}
th{background:#f4f4f4;position:sticky;top:0} td:first-child,th:first-child{text-align:left}
.scroll{max-height:420px;max-width:100%;overflow:auto;display:inline-block}
.neg{color:#b00020} .pos{color:#1b7f3b} img.figure{max-width:100%}
.case{margin:1em 0 1.5em} .case h3{margin:.3em 0} .row{display:flex;gap:12px;flex-wrap:wrap;align-items:flex-start}
.strip{display:grid;grid-template-columns:repeat(2,192px);gap:4px}
figure{margin:0} figure img{width:192px;height:192px;image-rendering:pixelated;display:block}
figcaption{font-size:12px;text-align:center}
.compare{position:relative;width:408px;height:432px;user-select:none}
.compare img{position:absolute;top:0;left:0;width:408px;height:408px;image-rendering:pixelated}
.compare .handle{position:absolute;top:0;bottom:24px;width:2px;background:#fff;box-shadow:0 0 2px #000;left:50%}
.compare input{position:absolute;bottom:0;left:0;width:100%;margin:0}
.tag{position:absolute;top:4px;background:rgba(0,0,0,.55);color:#fff;padding:0 4px;font-size:12px}
.tag.left{left:4px} .tag.right{right:4px}
"""

SCRIPT = """
(function () {
  function setSlider(index, percent) {
    var box = document.querySelector('.compare[data-case="' + index + '"]');
    if (!box) { throw new Error('no slider ' + index); }
    var p = Math.max(0, Math.min(100, Number(percent)));
    box.querySelector('img.over').style.clipPath = 'inset(0 ' + (100 - p) + '% 0 0)';
    box.querySelector('.handle').style.left = p + '%';
    box.querySelector('input').value = String(p);
    return p;
  }
  document.querySelectorAll('.compare').forEach(function (box) {
    box.querySelectorAll('img[data-from]').forEach(function (img) {
      img.src = document.getElementById(img.dataset.from).src;
    });
    var input = box.querySelector('input');
    input.addEventListener('input', function () { setSlider(box.dataset.case, input.value); });
    setSlider(box.dataset.case, input.value);
  });
  window.srx4 = {setSlider: setSlider, sliders: document.querySelectorAll('.compare').length};
})();
"""


def page_html(title: str, subtitle: str, cards, sections) -> str:
    """cards: [(label, value text)]; sections: [(heading, inner html)]."""
    card_html = "".join(f'<div class="card">{html.escape(label)}<b>{html.escape(value)}</b></div>'
                        for label, value in cards)
    body = "".join(f"<h2>{html.escape(heading)}</h2>{inner}" for heading, inner in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width"><style>{STYLE}</style></head><body>'
            f'<h1>{html.escape(title)}</h1><p class="sub">{html.escape(subtitle)} · written '
            f'{time.strftime("%Y-%m-%d %H:%M:%S")}</p><div class="cards">{card_html}</div>{body}'
            f"<script>{SCRIPT}</script></body></html>")


def write_report(path, title: str, subtitle: str, cards, sections, cases: Cases = None):
    """Write the page atomically (a reader never sees half of it)."""
    sections = list(sections) + (cases_html(cases) if cases else [])
    atomic_write_text(path, page_html(title, subtitle, cards, sections))


def image_rows(names, model_rows, bicubic_rows, columns) -> list:
    """Per-image rows for the table: name, bicubic and model figures, gain (PSNR dB),
    sorted by gain, lowest first."""
    rows = []
    for name, model, bicubic in zip(names, model_rows, bicubic_rows):
        row = {"image": name}
        for c in columns:
            row[f"bicubic {c}"] = bicubic.get(c, float("nan"))
            row[f"model {c}"] = model[c]
        first = columns[0]
        row["gain (dB)"] = model[first] - bicubic.get(first, float("nan"))
        rows.append(row)
    return sorted(rows, key=lambda r: (r["gain (dB)"] != r["gain (dB)"], r["gain (dB)"]))
