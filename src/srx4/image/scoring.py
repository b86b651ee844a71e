"""One way to score, two explicit protocols: validation (`train/validate.py`),
`score.py` and `evaluate.py` all measure through here.

- COMPETITION (GNR638, the Kaggle SR competitions): RGB in [0, 1], no border
  shaved, PSNR and scikit-image's SSIM on colour images (7x7 uniform window,
  sample covariance, mean over channels), score = PSNR + 40 * SSIM.
  Columns: psnr, ssim, score.
- PAPER (the Set5/Set14 tables): Y of BT.601 (MATLAB's rgb2ycbcr), `scale`
  pixels shaved from each border, the papers' SSIM (11x11 Gaussian, sigma 1.5).
  Columns: psnr_y, ssim_y.

Grey images, one rule (`match_channels`): a grey ground truth is read as one
channel. The competition reads every file as RGB, so there it becomes three
equal channels; the papers score a grey image on its own grey values, so there
an RGB prediction becomes the mean of its channels (a grey model output has
three equal channels and is unchanged) and no Y conversion is applied.

Precision: float64 by default (checked against scikit-image to 1e-8 in the
tests); validation passes float32, which agrees within 1e-4 dB (tested) and
runs many times faster on a GPU (float64 is 1/32 rate on a T4) and on a CPU.
PSNR is capped at 100 dB (identical images would give inf).

The bicubic line: `bicubic_prediction` is MATLAB bicubic upsampling rounded to
8 bits, i.e. exactly what `predict.py --model bicubic` writes as PNG.
"""
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from srx4.image.codec import to_tensor
from srx4.image.resize import resize_tensor
from srx4.image.metrics import psnr, rgb_to_y, ssim


@dataclass(frozen=True)
class Protocol:
    name: str
    y_channel: bool        # score BT.601 Y of RGB images
    shave_scale: bool      # shave `scale` pixels from each border
    ssim_window: str       # "uniform7" (scikit-image) or "gaussian11" (the papers)
    ssim_weight: float     # score = PSNR + ssim_weight * SSIM; 0: no score column
    suffix: str            # column names: psnr<suffix>, ssim<suffix>

    def columns(self, with_ssim: bool = True):
        names = [f"psnr{self.suffix}"] + ([f"ssim{self.suffix}"] if with_ssim else [])
        return names + (["score"] if with_ssim and self.ssim_weight else [])

    def describe(self, scale: int) -> str:
        if self.y_channel:
            return f"{self.name}: Y (BT.601), {scale} px shaved, SSIM 11x11 Gaussian"
        return f"{self.name}: RGB, no shave, SSIM 7x7 uniform (scikit-image), score = PSNR + {self.ssim_weight:g} SSIM"

    def measure(self, sr, hr, scale: int, dtype=torch.float64, with_ssim: bool = True) -> dict:
        """{column: per-image tensor (N,)} for float images in [0, 1], (N, C, H, W) or (C, H, W),
        C = 3 or 1 (grey, see `match_channels`). No host sync."""
        sr, hr = match_channels(sr.to(dtype), hr.to(dtype), self)
        if sr.dim() == 3:
            sr, hr = sr[None], hr[None]
        # (N, C, H, W) each, or hr (1, C, H, W): one ground truth for N predictions
        if self.y_channel and sr.shape[1] == 3:
            sr, hr = rgb_to_y(sr), rgb_to_y(hr)
        if self.shave_scale and scale:
            sr, hr = sr[..., scale:-scale, scale:-scale], hr[..., scale:-scale, scale:-scale]
        values = {f"psnr{self.suffix}": psnr(sr, hr, dtype)}
        if with_ssim:
            values[f"ssim{self.suffix}"] = ssim(sr, hr, self.ssim_window, dtype)
            if self.ssim_weight:
                values["score"] = values[f"psnr{self.suffix}"] + self.ssim_weight * values[f"ssim{self.suffix}"]
        return values


COMPETITION = Protocol("competition", y_channel=False, shave_scale=False, ssim_window="uniform7", ssim_weight=40.0,
                       suffix="")
PAPER = Protocol("paper", y_channel=True, shave_scale=True, ssim_window="gaussian11", ssim_weight=0.0, suffix="_y")
PROTOCOLS = {"competition": COMPETITION, "paper": PAPER}


def match_channels(sr: torch.Tensor, hr: torch.Tensor, protocol: Protocol):
    """The grey rule (see the module docstring): returns (sr, hr) with equal channel counts."""
    c = -3  # the channel axis of (C, H, W) and (N, C, H, W)
    if hr.shape[c] == sr.shape[c]:
        return sr, hr
    if hr.shape[c] == 1 and sr.shape[c] == 3:
        if protocol.y_channel:
            return sr.mean(dim=c, keepdim=True), hr
        return sr, hr.expand(*hr.shape[:c], 3, *hr.shape[c + 1:])
    if hr.shape[c] == 3 and sr.shape[c] == 1:
        return sr.expand(*sr.shape[:c], 3, *sr.shape[c + 1:]), hr
    raise ValueError(f"channels: sr {tuple(sr.shape)} vs hr {tuple(hr.shape)}")


def score_images(predictions, hr: np.ndarray, protocols, scale: int, device="cpu", dtype=torch.float64) -> list:
    """Every column of `protocols` for each uint8 prediction (a model's, bicubic's, ...) against
    one uint8 ground truth ((H, W, 3) or grey (H, W)): a list of {column: float}, one per
    prediction. The ground truth's share of the work (its Y, its SSIM maps) is done once."""
    for sr in predictions:
        if sr.shape[:2] != hr.shape[:2]:
            raise ValueError(f"prediction {sr.shape[1]}x{sr.shape[0]} vs ground truth {hr.shape[1]}x{hr.shape[0]}")
    hr_t = to_tensor(hr, dtype).to(device)[None]                                    # (1, C, H, W)
    grey = all(sr.ndim == 2 for sr in predictions)
    sr_t = torch.stack([to_tensor(sr if grey or sr.ndim == 3 else np.dstack([sr] * 3), dtype)
                        for sr in predictions]).to(device)                         # (N, C', H, W)
    values = {}
    for protocol in protocols:
        values.update(protocol.measure(sr_t, hr_t, scale, dtype))
    table = torch.stack(list(values.values()), dim=1).tolist()                      # one host sync
    return [dict(zip(values, row)) for row in table]


def bicubic_prediction(lr: np.ndarray, scale: int, device="cpu") -> np.ndarray:
    """MATLAB-bicubic upsampling of a uint8 (H, W[, 3]) image, rounded to uint8 as a PNG would be."""
    x = to_tensor(lr, torch.float32).to(device)[None]                  # (1, C, H, W)
    up = resize_tensor(x, scale)[0].clamp(0, 1).mul(255).round().byte()
    return up[0].cpu().numpy() if lr.ndim == 2 else up.permute(1, 2, 0).cpu().numpy()


# The figure each leaderboard shows, and the column that holds it (competition protocol).
# One vocabulary with --select: "score" is PSNR + 40 SSIM; "psnr+40ssim" is its old spelling.
LEADERBOARD_COLUMNS = {"score": "score", "psnr": "psnr"}
OLD_METRIC_NAMES = {"psnr+40ssim": "score"}
COMPETITION_METRICS = {"gnr638": "score", "gnr-638": "score", "super-resolution-in-video-games": "psnr"}


def leaderboard_metric(wanted: str, slug: str = ""):
    """(metric, why) for --metric `wanted` (auto: the known competition's own figure, else
    GNR638's PSNR + 40 SSIM, this repo's first competition): "score" or "psnr"."""
    if wanted != "auto":
        return OLD_METRIC_NAMES.get(wanted, wanted), "--metric"
    if slug in COMPETITION_METRICS:
        return COMPETITION_METRICS[slug], f"the leaderboard of {slug}"
    return "score", "no known competition found: GNR638's PSNR + 40 SSIM"


# What validation records per image: the competition's three columns and the papers' PSNR
# (the Gaussian SSIM is left to evaluate.py: validation stays cheap).
VALIDATION_COLUMNS = ("psnr", "psnr_y", "ssim", "score")


@dataclass
class Validation:
    """One validation pass over a set of images (srx4.train.validate): the mean of each
    `VALIDATION_COLUMNS` figure, the images scored and left out, every image's figures,
    and what the run's pictures and report are drawn from."""
    psnr: float                 # RGB PSNR, dB, mean over images (the competition's)
    psnr_y: float               # Y (BT.601) PSNR with `scale` px shaved (the papers')
    ssim: float                 # RGB SSIM, scikit-image's window (the competition's)
    score: float                # psnr + 40 ssim (GNR638's leaderboard figure)
    images: int                 # images scored (all ranks)
    dropped: int                # images that failed to decode, left out
    per_image: list = field(default_factory=list)   # [{"index", "name", psnr, psnr_y, ssim, score}], all ranks
    first: Optional[tuple] = None   # rank 0: the first image's (lr, sr, hr) on the CPU, for pictures
    model: object = None        # the inference form that was scored (for the report's crops)

    def figure(self, column: str) -> float:
        """One of VALIDATION_COLUMNS by name (what --select names)."""
        if column not in VALIDATION_COLUMNS:
            raise KeyError(f"{column} is not one of {VALIDATION_COLUMNS}")
        return getattr(self, column)

    def figures(self) -> dict:
        """The means with images and dropped: what last.ckpt and summary.json keep."""
        return {**{c: getattr(self, c) for c in VALIDATION_COLUMNS}, "images": self.images, "dropped": self.dropped}

    def by_name(self) -> dict:
        """Image name -> that image's figures (the report compares model and bicubic per image)."""
        return {row["name"]: row for row in self.per_image}


def validation_metrics(sr, hr, scale: int, dtype=torch.float32) -> torch.Tensor:
    """(N, 4) per-image `VALIDATION_COLUMNS` on the tensors' device, no host sync."""
    values = {**COMPETITION.measure(sr, hr, scale, dtype), **PAPER.measure(sr, hr, scale, dtype, with_ssim=False)}
    return torch.stack([values[name] for name in VALIDATION_COLUMNS], dim=1)
