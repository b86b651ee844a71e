"""The formulas and the two protocols against scikit-image on real images, to 1e-8;
the grey rule on real grey and grey + alpha PNGs; the bicubic forms against each other."""
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import BENCHMARKS
from srx4.image.codec import read_image, to_tensor
from srx4.image.resize import _resize_axis, imresize, resize_tensor, round_half_away
from srx4.image.metrics import psnr, rgb_to_y, ssim
from srx4.image.scoring import (COMPETITION, PAPER, bicubic_prediction, match_channels, score_images, validation_metrics)

TOLERANCE = 1e-8


def real_pair():
    """A real photo (Set5's butterfly, the one with the most edges) and its MATLAB bicubic x4."""
    hr = read_image(BENCHMARKS / "Set5" / "HR" / "butterfly.png")
    lr = read_image(BENCHMARKS / "Set5" / "LR_x4" / "butterfly.png")
    return bicubic_prediction(lr, 4), hr


def t(img):
    return to_tensor(img, torch.float64)


def skimage_paper(sr, hr, scale=4):
    """The papers' figures by scikit-image alone: its own Y conversion, shave, Gaussian SSIM."""
    def y(img):
        return (rgb2ycbcr(img)[..., 0] if img.ndim == 3 else img.astype(np.float64))[scale:-scale, scale:-scale] / 255
    ys, yh = y(sr), y(hr)
    return (peak_signal_noise_ratio(yh, ys, data_range=1),
            structural_similarity(yh, ys, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False))


def test_formulas_match_scikit_image():
    sr, hr = real_pair()
    assert abs(psnr(t(sr), t(hr)).item() - peak_signal_noise_ratio(hr, sr)) < TOLERANCE
    assert abs(ssim(t(sr), t(hr), "uniform7").item()
               - structural_similarity(hr / 255, sr / 255, data_range=1, channel_axis=2)) < TOLERANCE
    one = (hr[..., 1] / 255, sr[..., 1] / 255)
    assert abs(ssim(torch.from_numpy(one[1])[None], torch.from_numpy(one[0])[None], "gaussian11").item()
               - structural_similarity(*one, data_range=1, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False)) < TOLERANCE
    y = rgb_to_y(t(hr)[None])[0, 0].numpy()
    assert np.abs(y * 255 - rgb2ycbcr(hr)[..., 0]).max() < 1e-9
    assert psnr(t(hr), t(hr)).item() == 100.0              # PSNR_CAP
    with pytest.raises(ValueError, match="smaller than the 11x11"):
        ssim(t(hr)[:, :10, :40], t(hr)[:, :10, :40])


def test_competition_protocol_is_scikit_images_rgb_score():
    sr, hr = real_pair()
    got = score_images([sr], hr, [COMPETITION], 4)[0]
    ref_psnr = peak_signal_noise_ratio(hr, sr)
    ref_ssim = structural_similarity(hr, sr, channel_axis=2, data_range=255)
    assert abs(got["psnr"] - ref_psnr) < TOLERANCE and abs(got["ssim"] - ref_ssim) < TOLERANCE
    assert abs(got["score"] - (ref_psnr + 40 * ref_ssim)) < TOLERANCE
    assert list(got) == ["psnr", "ssim", "score"]


def test_paper_protocol_is_y_shaved_gaussian_ssim():
    sr, hr = real_pair()
    got = score_images([sr], hr, [PAPER], 4)[0]
    ref_psnr, ref_ssim = skimage_paper(sr, hr)
    assert abs(got["psnr_y"] - ref_psnr) < TOLERANCE and abs(got["ssim_y"] - ref_ssim) < TOLERANCE
    # the shave is the scale: with scale 2 the figure changes
    assert abs(score_images([sr], hr, [PAPER], 2)[0]["psnr_y"] - got["psnr_y"]) > 1e-4


def test_several_predictions_against_one_ground_truth_equal_separate_scoring():
    sr, hr = real_pair()
    noisy = np.clip(sr.astype(int) + np.random.default_rng(0).integers(-3, 4, sr.shape), 0, 255).astype(np.uint8)
    both = score_images([sr, noisy], hr, [COMPETITION, PAPER], 4)
    for pred, row in zip((sr, noisy), both):
        alone = score_images([pred], hr, [COMPETITION, PAPER], 4)[0]
        assert all(abs(row[k] - alone[k]) < 1e-12 for k in alone)
    assert both[0]["psnr"] != both[1]["psnr"]


def test_float32_agrees_with_float64_within_documented_bounds():
    sr, hr = real_pair()
    f64 = validation_metrics(t(sr)[None], t(hr)[None], 4, torch.float64)
    f32 = validation_metrics(t(sr)[None].float(), t(hr)[None].float(), 4, torch.float32).double()
    assert (f64 - f32).abs()[:, [0, 1]].max() < 1e-4          # PSNR, PSNR_Y: dB
    assert (f64 - f32).abs()[:, 2].max() < 1e-5                # SSIM
    assert (f64 - f32).abs()[:, 3].max() < 1e-3                # score = PSNR + 40 SSIM


def grey_files(tmp_path):
    """Set14's bridge (a real 8-bit grey PNG) and the same pixels saved as grey + alpha."""
    grey = BENCHMARKS / "Set14" / "HR" / "bridge.png"
    assert Image.open(grey).mode == "L"
    Image.open(grey).convert("LA").save(tmp_path / "bridge_la.png")
    return grey, tmp_path / "bridge_la.png"


def test_grey_and_grey_alpha_pngs_read_as_one_channel(tmp_path):
    grey, grey_alpha = grey_files(tmp_path)
    a, b = read_image(grey, keep_grey=True), read_image(grey_alpha, keep_grey=True)
    assert a.ndim == b.ndim == 2 and np.array_equal(a, b)
    assert read_image(grey_alpha).shape == a.shape + (3,)          # RGB unless grey is asked for
    assert read_image(BENCHMARKS / "Set5" / "HR" / "bird.png", keep_grey=True).ndim == 3


def test_grey_rule_papers_own_grey_values_competition_three_channels(tmp_path):
    grey, grey_alpha = grey_files(tmp_path)
    hr = read_image(grey_alpha, keep_grey=True)
    lr = read_image(BENCHMARKS / "Set14" / "LR_x4" / "bridge.png", keep_grey=True)
    sr_grey = bicubic_prediction(lr, 4)                              # (H, W)
    sr_rgb = np.dstack([sr_grey] * 3)                                # as a model / a PNG returns it
    paper = score_images([sr_grey, sr_rgb], hr, [PAPER], 4)
    ref_psnr, ref_ssim = skimage_paper(sr_grey, hr)                   # on the grey values, no Y conversion
    for row in paper:
        assert abs(row["psnr_y"] - ref_psnr) < TOLERANCE and abs(row["ssim_y"] - ref_ssim) < TOLERANCE
    via_y = skimage_paper(sr_rgb, np.dstack([hr] * 3))[0]            # what converting to RGB then Y gives
    assert abs(via_y - ref_psnr) > 0.01
    competition = score_images([sr_rgb], hr, [COMPETITION], 4)[0]
    assert abs(competition["psnr"] - peak_signal_noise_ratio(np.dstack([hr] * 3), sr_rgb)) < TOLERANCE
    # an RGB prediction of a grey image is scored on the mean of its channels
    tinted = sr_rgb.astype(np.float64) / 255 + np.array([0.01, 0.0, -0.01])
    sr_t, hr_t = match_channels(torch.from_numpy(tinted).permute(2, 0, 1), t(hr), PAPER)
    assert sr_t.shape == hr_t.shape == (1,) + hr.shape
    assert torch.allclose(sr_t[0], t(sr_grey)[0], atol=1e-12)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upscale_convolution_equals_the_gather_form(scale):
    x = to_tensor(data.chelsea()[40:73, 60:101], torch.float64)[None]     # (1, 3, 33, 41), real pixels
    gather = _resize_axis(_resize_axis(x, -2, 33 * scale, scale), -1, 41 * scale, scale)
    conv = resize_tensor(x, scale)
    assert conv.shape == gather.shape and (conv - gather).abs().max().item() < 1e-12
    lr = data.coffee()[:30, :44]                                           # uint8, rounded after each pass
    y = torch.from_numpy(lr).double().permute(2, 0, 1)
    for dim, length in ((-2, 30 * scale), (-1, 44 * scale)):
        y = round_half_away(_resize_axis(y, dim, length, scale)).clamp(0, 255)
    assert np.array_equal(imresize(lr, scale), y.byte().permute(1, 2, 0).numpy())


def test_bicubic_prediction_is_what_predict_writes(tmp_path):
    from conftest import run_script
    from srx4.image.codec import write_png
    lr = read_image(BENCHMARKS / "Set5" / "LR_x4" / "bird.png")
    write_png(tmp_path / "lr" / "bird.png", lr)
    run_script("predict.py", "--model", "bicubic", "--input", tmp_path / "lr", "--output", tmp_path / "out",
               "--device", "cpu", work=tmp_path)
    assert np.array_equal(read_image(tmp_path / "out" / "bird.png"), bicubic_prediction(lr, 4))


def test_shapes_dtypes_and_refusals_are_exact():
    sr, hr = real_pair()
    s32, h32 = to_tensor(sr), to_tensor(hr)                          # float32 inputs
    p = psnr(s32, h32)
    assert p.dtype == torch.float64 and abs(p.item() - psnr(s32.double(), h32.double()).item()) < 1e-12
    for window in ("uniform7", "gaussian11"):
        q = ssim(s32, h32, window)
        assert q.dtype == torch.float64 and abs(q.item() - ssim(s32.double(), h32.double(), window).item()) < 1e-12
    with pytest.raises(ValueError, match=r"shape mismatch: sr \(1, 3, 256, 256\) vs hr \(1, 3, 256, 255\)"):
        psnr(t(sr), t(hr)[..., :255])
    with pytest.raises(ValueError, match=r"shape mismatch: sr \(2, 3, 256, 256\) vs hr \(3, 3, 256, 256\)"):
        psnr(torch.stack([t(sr)] * 2), torch.stack([t(hr)] * 3))
    assert psnr(torch.stack([t(sr), t(hr)]), t(hr)[None]).shape == (2,)     # one ground truth, two predictions
    with pytest.raises(ValueError, match="unknown SSIM window 'box': expected one of"):
        ssim(t(sr), t(hr), "box")
    assert ssim(t(sr)[:, :11, :11], t(hr)[:, :11, :11]).shape == (1,)       # exactly the window: one value
    with pytest.raises(ValueError, match="image 11x10 is smaller than the 11x11 SSIM window"):
        ssim(t(sr)[:, :10, :11], t(hr)[:, :10, :11])
    with pytest.raises(ValueError, match="image 10x11 is smaller"):
        ssim(t(sr)[:, :11, :10], t(hr)[:, :11, :10])


def test_protocol_inputs_of_every_form():
    sr, hr = real_pair()
    batched = PAPER.measure(t(sr)[None], t(hr)[None], 4)
    single = PAPER.measure(t(sr), t(hr), 4)                          # (C, H, W) works as well
    assert batched.keys() == single.keys() == {"psnr_y", "ssim_y"}
    assert all(torch.equal(batched[k], single[k]) for k in batched)
    f32 = COMPETITION.measure(t(sr), t(hr), 4, torch.float32)
    assert all(v.dtype == torch.float32 for v in f32.values()) and list(f32) == ["psnr", "ssim", "score"]
    assert COMPETITION.columns() == ["psnr", "ssim", "score"] and PAPER.columns(False) == ["psnr_y"]
    assert COMPETITION.columns(False) == ["psnr"] and PAPER.columns() == ["psnr_y", "ssim_y"]
    assert "4 px shaved" in PAPER.describe(4) and "PSNR + 40 SSIM" in COMPETITION.describe(4)
    grey = t(sr)[:1]
    up, ref = match_channels(grey, t(hr), PAPER)                     # a grey prediction of a colour image
    assert up.shape == ref.shape == t(hr).shape and torch.equal(up[2], grey[0])
    with pytest.raises(ValueError, match=r"channels: sr \(2, 256, 256\) vs hr \(3, 256, 256\)"):
        match_channels(t(sr)[:2], t(hr), PAPER)
    with pytest.raises(ValueError, match="prediction 250x200 vs ground truth 250x210"):
        score_images([sr[:200, :250]], hr[:210, :250], [PAPER], 4)
    with pytest.raises(ValueError, match=r"channels: sr \(1, 2, 256, 256\) vs hr \(1, 1, 256, 256\)"):
        match_channels(t(sr)[None, :2], t(hr)[None, :1], PAPER)
    up4, _ = match_channels(t(sr)[None, :1], t(hr)[None], COMPETITION)     # batched (N, 1, H, W) as well
    assert up4.shape == (1, 3, 256, 256)
    mixed = score_images([sr[..., 0], sr], hr[..., 0], [COMPETITION, PAPER], 4)   # grey and colour predictions
    assert len(mixed) == 2 and all(set(m) == {"psnr", "ssim", "score", "psnr_y", "ssim_y"} for m in mixed)
    grey_only = score_images([sr[..., 0]], hr[..., 0], [PAPER], 4)[0]
    assert abs(grey_only["psnr_y"] - skimage_paper(sr[..., 0], hr[..., 0])[0]) < TOLERANCE


def test_validation_metrics_are_the_two_protocols_columns():
    sr, hr = real_pair()
    reference = score_images([sr], hr, [COMPETITION, PAPER], 4)[0]
    for dtype in (torch.float64, torch.float32):
        got = validation_metrics(t(sr)[None].to(dtype), t(hr)[None].to(dtype), 4, dtype)
        assert got.dtype == dtype and got.shape == (1, 4)
        tol = 1e-10 if dtype == torch.float64 else 1e-3
        for k, name in enumerate(("psnr", "psnr_y", "ssim", "score")):
            assert abs(got[0, k].item() - reference[name]) < tol, name
    assert validation_metrics(t(sr)[None], t(hr)[None], 4, torch.float32).dtype == torch.float32  # asked, not given
    assert bicubic_prediction(read_image(BENCHMARKS / "Set5" / "LR_x4" / "bird.png"), 4).dtype == np.uint8
    with pytest.raises(AssertionError, match="^imresize expects uint8$"):
        imresize(sr.astype(np.float32), 1 / 4)


def test_full_ycbcr_matches_scikit_image_and_inverts():
    from srx4.image.metrics import rgb_to_ycbcr, ycbcr_to_rgb
    _, hr = real_pair()
    ycbcr = rgb_to_ycbcr(t(hr)[None])[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(ycbcr - rgb2ycbcr(hr)).max() < 1e-9
    assert (ycbcr_to_rgb(rgb_to_ycbcr(t(hr)[None])) - t(hr)[None]).abs().max().item() < 1e-12


def test_the_leaderboard_figure_is_the_competition_s_own_or_gnr638_s_named():
    from srx4.image.scoring import COMPETITION_METRICS, leaderboard_metric
    assert COMPETITION_METRICS["gnr638"] == "score"          # PSNR + 40 SSIM, named as --select names it
    assert COMPETITION_METRICS["super-resolution-in-video-games"] == "psnr"
    for slug, metric in COMPETITION_METRICS.items():
        assert leaderboard_metric("auto", slug) == (metric, f"the leaderboard of {slug}")
    for slug in ("", "some-other-competition"):
        assert leaderboard_metric("auto", slug) == ("score", "no known competition found: GNR638's PSNR + 40 SSIM")
    assert leaderboard_metric("psnr", "gnr638") == ("psnr", "--metric")      # asked for: the flag wins
    assert leaderboard_metric("score") == ("score", "--metric")
    assert leaderboard_metric("psnr+40ssim") == ("score", "--metric")      # the old spelling reads as today's


def test_a_validation_gives_its_figures_by_name():
    from srx4.image.scoring import VALIDATION_COLUMNS, Validation
    rows = [{"index": 0, "name": "a.png", "psnr": 30.0}, {"index": 1, "name": "b.png", "psnr": 31.0}]
    val = Validation(psnr=30.5, psnr_y=32.25, ssim=0.875, score=65.5, images=2, dropped=1, per_image=rows)
    assert VALIDATION_COLUMNS == ("psnr", "psnr_y", "ssim", "score")
    assert [val.figure(c) for c in VALIDATION_COLUMNS] == [30.5, 32.25, 0.875, 65.5]
    with pytest.raises(KeyError, match="images is not one of"):
        val.figure("images")
    assert val.figures() == {"psnr": 30.5, "psnr_y": 32.25, "ssim": 0.875, "score": 65.5, "images": 2, "dropped": 1}
    assert val.by_name() == {"a.png": rows[0], "b.png": rows[1]}
