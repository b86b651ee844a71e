"""Dirty pairs: an LR that is not its HR's downscale (a swapped file, another frame, a shift).

`pair_psnr(lr, hr, scale)` scores the bicubic-upscaled LR against the HR (RGB PSNR,
uint8 (h, w, 3) and (s*h, s*w, 3) in). Whatever the competition's degradation, a true
pair scores far above a mismatched one: real GNR638 frames about 25 dB, the demo's
photos about 28, two different images about 8-15. Pairs under `--min-pair-psnr`
(default 18 dB, the cut of SRGB's third-place write-up; 0 keeps every pair) are left
out of training and validation, named in hygiene.json, and counted with the other
left-out files. Measured where each image is decoded anyway (the cache fill, or a
streaming worker), so it costs one bicubic pass per pair.
"""
from dataclasses import dataclass, field

import numpy as np
import torch

from srx4.image.resize import BicubicUpscale

MIN_PAIR_PSNR = 18.0
REASON = "LR not HR's downscale (bicubic PSNR under --min-pair-psnr)"


@torch.no_grad()
def pair_psnr(lr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    """RGB PSNR (dB) of the MATLAB-bicubic upscale of `lr` against `hr`, both uint8 (H, W, 3)."""
    x = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None].float()    # (1, 3, h, w) in [0, 255]
    up = BicubicUpscale(scale)(x).clamp_(0, 255).round_()                              # (1, 3, sh, sw)
    truth = torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1)[None].float()
    mse = (up - truth).pow_(2).mean().item()
    return float("inf") if mse == 0 else 10 * float(np.log10(255.0 ** 2 / mse))


@dataclass
class PairCheck:
    """The pairs measured so far (name -> dB) and which are left out, for hygiene.json."""
    min_psnr: float = MIN_PAIR_PSNR
    measured: dict = field(default_factory=dict)

    def keeps(self, psnr: float) -> bool:
        return self.min_psnr <= 0 or psnr >= self.min_psnr

    def record(self, name: str, psnr: float) -> bool:
        """Note a pair's figure; True when it is kept."""
        self.measured[name] = psnr
        return self.keeps(psnr)

    def left_out(self) -> list:
        return sorted(n for n, v in self.measured.items() if not self.keeps(v))

    def worst(self, count: int = 10) -> list:
        """[[name, dB], ...] the lowest first."""
        ranked = sorted(self.measured.items(), key=lambda kv: (kv[1], kv[0]))[:count]
        return [[n, round(v, 2)] for n, v in ranked]

    def summary(self) -> dict:
        values = np.array([v for v in self.measured.values() if np.isfinite(v)])
        return {"measure": "RGB PSNR of the bicubic-upscaled LR against the HR (dB)",
                "min_pair_psnr": self.min_psnr, "measured": len(self.measured),
                "median": round(float(np.median(values)), 2) if len(values) else None,
                "left_out": self.left_out(), "worst": self.worst()}

    def line(self) -> str:
        """One line for the log."""
        if not self.measured:
            return "pair check (bicubic LR vs HR): each pair measured when first decoded"
        s = self.summary()
        worst = ", ".join(f"{n} {v:.1f}" for n, v in s["worst"][:3])
        cut = f"under {self.min_psnr:g} dB left out: {len(s['left_out'])}" if self.min_psnr > 0 else \
            "none left out (--min-pair-psnr 0)"
        return f"pair check (bicubic LR vs HR): median {s['median']} dB over {s['measured']} pairs; {cut}; lowest {worst}"
