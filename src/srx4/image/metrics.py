"""The formulas: PSNR, the two SSIM windows, and BT.601 colour conversion.

Pure functions on torch tensors (N, C, H, W) or (C, H, W), float images in
[0, 1], computed in the dtype asked for (float64 by default; float32 for
validation on a GPU) on whatever device the tensors are on. Which channels,
borders and window a score uses is a protocol's choice: see `scoring.py`.

- `psnr(sr, hr)`: dB, per image (N,), capped at `PSNR_CAP` (100 dB: identical images,
  whose MSE is 0, give 100 everywhere, not inf; so a mean over images stays finite).
  The one PSNR of the repo: scoring, validation, pair checks, reports and
  super_resolve.py all call it.
- `ssim(sr, hr, window="gaussian11")`: Wang et al.'s SSIM as the SR papers'
  MATLAB code computes it (11x11 Gaussian, sigma 1.5, 'valid' region,
  population variances); `window="uniform7"`: scikit-image's
  `structural_similarity` default (7x7 uniform window, sample covariance), the
  form the competition uses. Mean over pixels and channels, per image (N,).
- `rgb_to_y`: BT.601 luma as MATLAB's rgb2ycbcr (Y in [16, 235] / 255).
"""
import functools

import torch

# BT.601 as MATLAB's rgb2ycbcr: RGB in [0, 1] -> Y in [16, 235], Cb and Cr in [16, 240] (on [0, 255])
YCBCR = ((65.481, 128.553, 24.966), (-37.797, -74.203, 112.0), (112.0, -93.786, -18.214))
YCBCR_OFFSET = (16.0, 128.0, 128.0)
SSIM_WINDOWS = ("gaussian11", "uniform7")
SSIM_C1, SSIM_C2 = 0.01 ** 2, 0.03 ** 2     # (K L)^2 with L = 1 (images in [0, 1])
PSNR_CAP = 100.0            # dB: the figure of identical images (MSE 0)
SSIM_BAND_ROWS = 32          # rows of the SSIM map computed at a time on a CPU (a GPU takes it whole)


def batched(x: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    x = x.to(dtype)
    return x.unsqueeze(0) if x.dim() == 3 else x


@functools.lru_cache(maxsize=16)
def _luma_weights(dtype, device) -> torch.Tensor:
    """The Y row of YCBCR as (1, 3, 1, 1), made once per dtype and device: building it at
    every call would copy it host-to-device, a GPU sync in each validation step."""
    return torch.tensor(YCBCR[0], dtype=dtype, device=device).view(1, 3, 1, 1)


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, 1, H, W) Y in [0, 1] (16/255 .. 235/255)."""
    w = _luma_weights(x.dtype, x.device)
    return ((x * w).sum(dim=1, keepdim=True) + YCBCR_OFFSET[0]) / 255.0


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> BT.601 YCbCr in [0, 1] (SRCNN's Y-only mode)."""
    m = torch.tensor(YCBCR, dtype=x.dtype, device=x.device) / 255
    offset = torch.tensor(YCBCR_OFFSET, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255
    return torch.einsum("ij,njhw->nihw", m, x) + offset


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """The inverse of `rgb_to_ycbcr`."""
    m = torch.linalg.inv(torch.tensor(YCBCR, dtype=torch.float64) / 255).to(x)
    offset = torch.tensor(YCBCR_OFFSET, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255
    return torch.einsum("ij,njhw->nihw", m, x - offset)


def _check(sr, hr, dtype):
    """Both batched in `dtype`; hr may be one image against several predictions (broadcast)."""
    sr, hr = batched(sr, dtype), batched(hr, dtype)
    if sr.shape[1:] != hr.shape[1:] or hr.shape[0] not in (1, sr.shape[0]):
        raise ValueError(f"shape mismatch: sr {tuple(sr.shape)} vs hr {tuple(hr.shape)}")
    return sr, hr


def psnr(sr, hr, dtype=torch.float64) -> torch.Tensor:
    """Per-image PSNR in dB (N,), peak 1 (images in [0, 1]); hr may be one image for N
    predictions. Identical images give PSNR_CAP (100 dB)."""
    sr, hr = _check(sr, hr, dtype)
    mse = ((sr - hr) ** 2).mean(dim=(1, 2, 3))
    return (10 * torch.log10(1.0 / mse)).clamp(max=PSNR_CAP)


def psnr_uint8(sr, hr) -> float:
    """`psnr` of two uint8 images (H, W) or (H, W, C), numpy arrays or tensors, in float64."""
    def chw(image):
        x = torch.as_tensor(image).to(torch.float64) / 255
        return x.movedim(-1, 0) if x.dim() == 3 else x[None]          # (C, H, W)
    return float(psnr(chw(sr), chw(hr))[0])


def _filter(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Depthwise 'valid' 2-D filter of (N, C, H, W) by the separable window taps x taps
    (k,): a k-tap pass down the columns, then along the rows (2k, not k^2, multiply-adds
    per pixel), each a sum of k shifted views scaled in place: memory-bound, no im2col
    and no float64 convolution kernel needed (4x faster than conv2d or unfold on a CPU)."""
    weights = taps.tolist()
    k = len(weights)
    rows = x.shape[2] - k + 1
    out = x[:, :, :rows] * weights[0]
    for i in range(1, k):
        out.add_(x[:, :, i:i + rows], alpha=weights[i])
    cols = x.shape[3] - k + 1
    result = out[..., :cols] * weights[0]
    for i in range(1, k):
        result.add_(out[..., i:i + cols], alpha=weights[i])
    return result                            # (N, C, H-k+1, W-k+1)


def gaussian_taps(size=11, sigma=1.5) -> torch.Tensor:
    """The 1-D taps of the papers' Gaussian window (their outer product is the 2-D window)."""
    g = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(g ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(sr, hr, window: str = "gaussian11", dtype=torch.float64) -> torch.Tensor:
    """Per-image SSIM (N,), the mean of the SSIM map over the 'valid' region and the channels.
    `hr` is (N, ...) or one image (1, ...) that each of the N predictions is scored against.

    gaussian11: Wang et al. / the SR papers (population variances, C1 = (0.01 L)^2,
    C2 = (0.03 L)^2, L = 1 here; SSIM does not depend on the scale of L).
    uniform7: scikit-image's default; skimage filters with reflect padding and then
    drops (7 - 1) / 2 pixels per border, so its mean covers exactly this 'valid' region."""
    sr, hr = _check(sr, hr, dtype)
    if window == "gaussian11":
        taps, cov_norm = gaussian_taps().to(dtype), 1.0
    elif window == "uniform7":
        taps, cov_norm = torch.full((7,), 1 / 7, dtype=dtype), 49 / 48
    else:
        raise ValueError(f"unknown SSIM window {window!r}: expected one of {SSIM_WINDOWS}")
    c1, c2 = SSIM_C1, SSIM_C2
    n, m, k = sr.shape[0], hr.shape[0], taps.numel()
    out_rows = sr.shape[2] - k + 1
    if out_rows < 1 or sr.shape[3] < k:
        raise ValueError(f"image {sr.shape[3]}x{sr.shape[2]} is smaller than the {k}x{k} SSIM window")
    band = SSIM_BAND_ROWS if sr.device.type == "cpu" else out_rows
    total = torch.zeros(n, dtype=dtype, device=sr.device)
    for top in range(0, out_rows, band):   # bands of rows: on a CPU the maps stay in its cache
        x, y = (t[:, :, top:min(top + band, out_rows) + k - 1] for t in (sr, hr))
        # the five maps in one pass; one ground truth against n predictions is filtered once
        filtered = _filter(torch.cat([x, x * x, x * y, y, y * y]), taps)
        mu_x, xx, xy, mu_y, yy = filtered.split([n, n, n, m, m])
        # the (co)variances' factor cov_norm is moved onto C2: (2 k cov + C2) / (k (vx + vy) + C2)
        # equals (2 cov + C2 / k) / (vx + vy + C2 / k), three passes fewer
        var_x = xx.sub_(mu_x * mu_x)
        var_y = yy.sub_(mu_y * mu_y)
        cov = xy.sub_(mu_x * mu_y)
        numerator = (mu_x * mu_y).mul_(2).add_(c1).mul_(cov.mul_(2).add_(c2 / cov_norm))
        denominator = (mu_x.square_().add_(mu_y.square_()).add_(c1)).mul_(var_x.add_(var_y).add_(c2 / cov_norm))
        total += numerator.div_(denominator).sum(dim=(1, 2, 3))
    return total / (sr.shape[1] * out_rows * (sr.shape[3] - k + 1))
