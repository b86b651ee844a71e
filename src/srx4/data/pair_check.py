"""Dirty pairs: an LR that is not its HR's downscale (a swapped file, another frame, a shift).

`pair_psnr(lr, hr, scale)` scores the bicubic-upscaled LR against the HR (RGB PSNR,
uint8 (h, w, 3) and (s*h, s*w, 3) in), the test of SRGB's third-place write-up: a
true pair scores far above a mismatched one (real GNR638 frames about 25 dB, two
different images 6-8). But texture the upscale cannot restore costs a true pair too:
five genuine bicubic pairs of BSD200 photos score 16.6-18.0 dB. So a pair under
`--min-pair-psnr` (default 18 dB; 0 keeps every pair) is measured a second way,
`down_psnr`: its HR averaged down to the LR's size against the LR, where texture
no longer counts (those five photos 32-33 dB, GNR638 27, swapped pairs 6-8), and is
left out only when that is under the cut too. Left-out pairs are named in
hygiene.json, the log and report.html, and counted with the other bad files.
Measured where each image is decoded anyway (the cache fill, or a streaming
worker): one bicubic pass per pair, the second figure only for the few under the cut.
"""
from dataclasses import dataclass, field

import numpy as np
import torch

from srx4.image.metrics import psnr
from srx4.image.resize import BicubicUpscale

MIN_PAIR_PSNR = 18.0
REASON = "LR not HR's downscale (under --min-pair-psnr upscaled and averaged down)"


@torch.no_grad()
def pair_psnr(lr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    """RGB PSNR (dB) of the MATLAB-bicubic upscale of `lr` against `hr`, both uint8 (H, W, 3)."""
    x = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None].float()    # (1, 3, h, w) in [0, 255]
    up = BicubicUpscale(scale)(x).clamp_(0, 255).round_()                              # (1, 3, sh, sw)
    truth = torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1)[None].float()
    return float(psnr(up / 255, truth / 255, torch.float32)[0])


@torch.no_grad()
def down_psnr(lr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    """RGB PSNR (dB) of `hr` averaged over scale x scale blocks against `lr`."""
    x = torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1)[None].float()    # (1, 3, sh, sw)
    down = torch.nn.functional.avg_pool2d(x, scale).round_()                          # (1, 3, h, w)
    truth = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None].float()
    return float(psnr(down / 255, truth / 255, torch.float32)[0])


def measure(lr: np.ndarray, hr: np.ndarray, scale: int, min_psnr: float = MIN_PAIR_PSNR) -> tuple:
    """(bicubic-up dB, averaged-down dB or None): the second only when the first is under the cut."""
    up = pair_psnr(lr, hr, scale)
    return up, (down_psnr(lr, hr, scale) if 0 < min_psnr and up < min_psnr else None)


@dataclass
class PairCheck:
    """The pairs measured so far (name -> (up dB, down dB or None), `measure`) and which are
    left out, for hygiene.json."""
    min_psnr: float = MIN_PAIR_PSNR
    measured: dict = field(default_factory=dict)

    def keeps(self, figures) -> bool:
        up, down = figures
        return self.min_psnr <= 0 or up >= self.min_psnr or (down is not None and down >= self.min_psnr)

    def record(self, name: str, figures) -> bool:
        """Note a pair's figures (`measure`); True when it is kept."""
        self.measured[name] = tuple(figures)
        return self.keeps(figures)

    def left_out(self) -> list:
        return sorted(n for n, v in self.measured.items() if not self.keeps(v))

    def worst(self, count: int = 10) -> list:
        """[[name, up dB, down dB or None], ...] the lowest up figure first."""
        ranked = sorted(self.measured.items(), key=lambda kv: (kv[1][0], kv[0]))[:count]
        return [[n, round(up, 2), None if down is None else round(down, 2)] for n, (up, down) in ranked]

    def summary(self) -> dict:
        values = np.array([v[0] for v in self.measured.values() if np.isfinite(v[0])])
        return {"measure": "RGB PSNR of the bicubic-upscaled LR against the HR (dB); under the cut also of the "
                           "HR averaged down to the LR's size against the LR (dB); left out when both are under",
                "min_pair_psnr": self.min_psnr, "measured": len(self.measured),
                "median": round(float(np.median(values)), 2) if len(values) else None,
                "left_out": self.left_out(), "worst": self.worst()}

    def line(self) -> str:
        """One line for the log."""
        if not self.measured:
            return "pair check (bicubic LR vs HR): each pair measured when first decoded"
        s = self.summary()
        worst = ", ".join(f"{n} {up:.1f}" for n, up, _ in s["worst"][:3])
        cut = f"under {self.min_psnr:g} dB left out: {len(s['left_out'])}" if self.min_psnr > 0 else \
            "none left out (--min-pair-psnr 0)"
        return f"pair check (bicubic LR vs HR): median {s['median']} dB over {s['measured']} pairs; {cut}; lowest {worst}"
