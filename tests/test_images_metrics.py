"""Image decoding in every PNG mode, the MATLAB resize against the benchmark LR files,
and the metrics against scikit-image on real images."""
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import SHARED, needs_shared
from srx4.images import ImageError, read_image, write_png
from srx4.imresize import imresize, resize_tensor
from srx4.metrics import psnr, rgb_to_y, ssim, ssim_skimage


def test_every_png_mode_becomes_rgb_uint8(tmp_path):
    rgb = data.astronaut()[:40, :50]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("L").save(tmp_path / "grey.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    Image.fromarray((rgb[:, :, 0].astype(np.uint16) * 257)).save(tmp_path / "grey16.png")
    for name in ("rgb", "rgba", "grey", "palette", "grey16"):
        img = read_image(tmp_path / f"{name}.png")
        assert img.shape == (40, 50, 3) and img.dtype == np.uint8, name
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgb)
    assert np.array_equal(read_image(tmp_path / "grey16.png")[:, :, 0], rgb[:, :, 0])
    assert read_image(tmp_path / "grey.png", keep_grey=True).ndim == 2
    assert read_image(tmp_path / "rgba.png", keep_alpha=True).shape == (40, 50, 4)


def test_unreadable_files_raise_with_the_name(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "dir.png").mkdir()
    for name in ("text.png", "empty.png", "dir.png"):
        with pytest.raises(ImageError, match=name):
            read_image(tmp_path / name)


def test_png_round_trip_and_permissions(tmp_path):
    img = data.coffee()[:30, :20]
    write_png(tmp_path / "a.png", img)
    assert np.array_equal(read_image(tmp_path / "a.png"), img)
    assert (tmp_path / "a.png").stat().st_mode & 0o044  # readable by others, not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temp file left behind


@needs_shared("benchmarks")
@pytest.mark.parametrize("name", ["Set5", "Set14"])
def test_matlab_resize_reproduces_benchmark_lr(name):
    equal = total = 0
    for hr_path in sorted((SHARED / "benchmarks" / name / "HR").glob("*.png")):
        hr = read_image(hr_path, keep_grey=True)
        lr = read_image(hr_path.parent.parent / "LR_x4" / hr_path.name, keep_grey=True)
        diff = np.abs(imresize(hr, 1 / 4).astype(int) - lr.astype(int))
        assert diff.max() <= 1, hr_path.name
        equal, total = equal + (diff == 0).sum(), total + diff.size
    assert equal / total >= 0.999


def test_resize_up_then_tensor_form_agree():
    lr = data.chelsea()[:24, :32]
    up_uint8 = imresize(lr, 4)
    up_float = resize_tensor(torch.from_numpy(lr).double().permute(2, 0, 1)[None], 4)[0]
    assert up_uint8.shape == (96, 128, 3)
    # rounding once at the end vs after each pass: at most 1 grey level apart
    assert np.abs(up_float.round().clamp(0, 255).permute(1, 2, 0).numpy() - up_uint8).max() <= 1


def _pair():
    hr = data.astronaut()[100:292, 100:292]
    sr = imresize(imresize(hr, 1 / 4), 4)
    return sr, hr


def _t(img):
    return torch.from_numpy(img).double().permute(2, 0, 1) / 255


def test_psnr_and_ssim_match_scikit_image_rgb():
    sr, hr = _pair()
    ref_psnr = peak_signal_noise_ratio(hr / 255, sr / 255, data_range=1)
    ref_ssim = structural_similarity(hr / 255, sr / 255, data_range=1, channel_axis=2)
    assert abs(psnr(_t(sr), _t(hr)).item() - ref_psnr) < 1e-4
    assert abs(ssim_skimage(_t(sr), _t(hr)).item() - ref_ssim) < 1e-4


def test_y_channel_with_crop_matches_scikit_image():
    sr, hr = _pair()
    y_sr, y_hr = rgb_to_y(_t(sr)[None])[0, 0].numpy(), rgb_to_y(_t(hr)[None])[0, 0].numpy()
    c = 4
    ref_psnr = peak_signal_noise_ratio(y_hr[c:-c, c:-c], y_sr[c:-c, c:-c], data_range=1)
    ref_ssim = structural_similarity(y_hr[c:-c, c:-c], y_sr[c:-c, c:-c], data_range=1, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False)
    assert abs(psnr(_t(sr), _t(hr), c, True).item() - ref_psnr) < 1e-4
    # the papers' SSIM: 11x11 Gaussian, sigma 1.5 (skimage's gaussian form, same window)
    assert abs(ssim(_t(sr), _t(hr), c, True).item() - ref_ssim) < 2e-3
    assert psnr(_t(hr), _t(hr)).item() == float("inf")
    assert abs(ssim(_t(hr), _t(hr)).item() - 1) < 1e-12
