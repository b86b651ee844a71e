"""Image decoding in every PNG mode and the MATLAB resize against the benchmark LR files
(the metrics and protocols are in test_scoring.py)."""
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from conftest import BENCHMARKS
from srx4.image.codec import ImageError, read_image, write_png
from srx4.image.resize import imresize, resize_tensor, round_half_away


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


def test_broken_pngs_are_named_by_their_structure(tmp_path, capfd):
    write_png(tmp_path / "good.png", data.astronaut()[:64, :64])
    good = (tmp_path / "good.png").read_bytes()
    idat = good.index(b"IDAT")
    flipped = bytearray(good)
    flipped[idat + 10] ^= 0xFF                                           # one byte of pixel data
    cases = {"cut.png": (good[: len(good) // 2], r"truncated PNG \(IDAT chunk cut short\)"),
             "flipped.png": (bytes(flipped), r"corrupt PNG \(IDAT chunk fails its CRC\)"),
             "no_end.png": (good[:-12], r"truncated PNG \(no IEND chunk\)")}
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ImageError, match=f"{name}: {message}"):
            read_image(tmp_path / name)
    # a bad CRC in an ancillary chunk is libpng's to skip: the image still decodes
    text_chunk = b"tEXt" + b"Comment\x00hello"
    ancillary = (len(text_chunk) - 4).to_bytes(4, "big") + text_chunk + b"\0\0\0\0"
    (tmp_path / "ancillary.png").write_bytes(good[:33] + ancillary + good[33:])
    assert np.array_equal(read_image(tmp_path / "ancillary.png"), read_image(tmp_path / "good.png"))
    assert "libpng" not in capfd.readouterr().err                      # no library lines on the terminal


def test_png_round_trip_and_permissions(tmp_path):
    img = data.coffee()[:30, :20]
    write_png(tmp_path / "a.png", img)
    assert np.array_equal(read_image(tmp_path / "a.png"), img)
    assert (tmp_path / "a.png").stat().st_mode & 0o044  # readable by others, not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temp file left behind


@pytest.mark.parametrize("name", ["Set5", "Set14"])
def test_matlab_resize_reproduces_benchmark_lr_bit_for_bit(name):
    """Every value of every LR_x4 file (as the dataset's authors made them with MATLAB)."""
    files = sorted((BENCHMARKS / name / "HR").glob("*.png"))
    assert len(files) == {"Set5": 5, "Set14": 14}[name]
    for hr_path in files:
        hr = read_image(hr_path, keep_grey=True)
        lr = read_image(hr_path.parent.parent / "LR_x4" / hr_path.name, keep_grey=True)
        assert imresize(hr, 1 / 4).shape == lr.shape, hr_path.name
        assert np.count_nonzero(imresize(hr, 1 / 4) != lr) == 0, hr_path.name


def test_matlab_rounding_sends_halves_away_from_zero():
    x = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4999, 254.5, 3.0])
    assert round_half_away(x).tolist() == [-3, -2, -1, 1, 2, 3, 2, 255, 3]


def test_resize_up_then_tensor_form_agree():
    lr = data.chelsea()[:24, :32]
    up_uint8 = imresize(lr, 4)
    up_float = resize_tensor(torch.from_numpy(lr).double().permute(2, 0, 1)[None], 4)[0]
    assert up_uint8.shape == (96, 128, 3)
    # rounding once at the end vs after each pass: at most 1 grey level apart
    assert np.abs(up_float.round().clamp(0, 255).permute(1, 2, 0).numpy() - up_uint8).max() <= 1


def test_every_psnr_in_the_repo_is_the_one_of_metrics():
    """Identical images score PSNR_CAP (100 dB) and a real pair the same figure in the
    scoring protocol, the pair check, a report's crops and super_resolve's comparison."""
    from srx4.data.pair_check import pair_psnr
    from srx4.image.metrics import PSNR_CAP, psnr, psnr_uint8
    from srx4.image.scoring import COMPETITION
    from srx4.runs.html import case_crops
    from srx4.image.codec import to_tensor
    hr = data.astronaut()[:128, :128]                                            # (128, 128, 3) uint8
    lr = imresize(hr, 0.25)
    up = resize_tensor(to_tensor(lr)[None].double(), 4)[0].clamp(0, 1)          # (3, 128, 128)
    up8 = up.mul(255).round().byte().permute(1, 2, 0).numpy()
    expected = float(psnr(to_tensor(up8, torch.float64), to_tensor(hr, torch.float64))[0])
    assert 20 < expected < 40
    assert psnr_uint8(up8, hr) == pytest.approx(expected, abs=1e-9)
    assert pair_psnr(lr, hr, 4) == pytest.approx(expected, abs=1e-3)           # float32 there
    scored = COMPETITION.measure(to_tensor(up8, torch.float64), to_tensor(hr, torch.float64), 4, with_ssim=False)["psnr"]
    assert float(scored[0]) == pytest.approx(expected, abs=1e-9)
    panels = case_crops(lr, up, up, to_tensor(hr), 4, focus="centre", side=128)["panels"]
    assert panels[1][2] == pytest.approx(expected, abs=1e-9)
    same = [psnr_uint8(hr, hr), float(psnr(to_tensor(hr), to_tensor(hr))[0]),
            float(COMPETITION.measure(to_tensor(hr), to_tensor(hr), 4, with_ssim=False)["psnr"][0]),
            case_crops(lr, hr, hr, hr, 4, focus="centre")["panels"][2][2]]
    assert same == [PSNR_CAP] * 4
