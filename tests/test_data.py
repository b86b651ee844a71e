"""Pairing and hygiene, the split, the decode-once cache, the crops and the collate."""
import numpy as np
import pytest
import torch

from conftest import make_pairs
from srx4.dataset import CHANNEL_ORDERS, EpochBatches, ImageCache, TrainPatches, collate_drop_none, crop_draws
from srx4.device_data import DevicePatches
from srx4.images import write_png
from srx4.imresize import imresize
from srx4.pairs import scan_pairs, source_of, split_pairs


def test_hygiene_reports_every_bad_file(tmp_path):
    folder = make_pairs(tmp_path / "d", count=4)
    (folder / "lr" / ".DS_Store").write_bytes(b"\0\0")
    (folder / "hr" / "Thumbs.db").write_bytes(b"x")
    (folder / "lr" / "sub.png").mkdir()
    (folder / "lr" / "notes.txt").write_text("hi")
    (folder / "lr" / "only_lr.png").write_bytes((folder / "lr" / "img_000.png").read_bytes())
    (folder / "hr" / "only_hr.png").write_bytes((folder / "hr" / "img_000.png").read_bytes())
    (folder / "lr" / "text.png").write_text("not a png")
    (folder / "hr" / "text.png").write_text("not a png")
    hr = np.zeros((60, 64, 3), np.uint8)  # 60 is not 4 x 16
    write_png(folder / "hr" / "badsize.png", hr)
    write_png(folder / "lr" / "badsize.png", np.zeros((16, 16, 3), np.uint8))
    pairs, hygiene = scan_pairs(folder, 4)
    assert [p.name for p in pairs] == [f"img_{k:03d}.png" for k in range(4)]
    reported = {name for names in hygiene.problems.values() for name in names}
    for expected in ("lr/.DS_Store", "hr/Thumbs.db", "lr/sub.png", "lr/notes.txt", "only_lr.png", "only_hr.png",
                     "text.png"):
        assert expected in reported, expected
    assert any(n.startswith("badsize.png") for n in reported)
    assert "8 files left out" in hygiene.summary()


def test_split_is_seeded_disjoint_and_keeps_sources_together():
    names = [f"{src:04d}_s{k:03d}.png" for src in range(20) for k in range(3)]
    a = split_pairs(names, 0.15, 42)
    b = split_pairs(list(reversed(names)), 0.15, 42)
    assert a == b
    assert not set(a["train"]) & set(a["val"]) and sorted(a["train"] + a["val"]) == sorted(names)
    assert {source_of(n) for n in a["train"]}.isdisjoint({source_of(n) for n in a["val"]})
    assert 6 <= len(a["val"]) <= 12
    assert split_pairs(names, 0.15, 7) != a
    assert split_pairs(names, 0, 42)["val"] == []


def test_too_few_sources_for_a_split_is_one_clear_error():
    with pytest.raises(ValueError, match="too few"):
        split_pairs(["a_s001.png", "a_s002.png"], 0.15, 42, "data/x")
    with pytest.raises(ValueError, match="no usable"):
        split_pairs([], 0.15, 42, "data/x")


def _caches(folder, ram_budget=None, cache_dir=None):
    pairs, _ = scan_pairs(folder, 4)
    lr = ImageCache([p.lr_path for p in pairs], [p.lr_size for p in pairs], ram_budget, cache_dir)
    hr = ImageCache([p.hr_path for p in pairs], [(w * 4, h * 4) for w, h in (p.lr_size for p in pairs)],
                    ram_budget, cache_dir)
    return lr, hr


def test_disk_cache_equals_ram_cache(pairs_dir, tmp_path):
    ram_lr, ram_hr = _caches(pairs_dir)
    disk_lr, disk_hr = _caches(pairs_dir, ram_budget=0, cache_dir=str(tmp_path / "cache"))
    assert not ram_hr.on_disk and disk_hr.on_disk
    for i in range(len(ram_hr)):
        assert np.array_equal(ram_hr[i], disk_hr[i]) and np.array_equal(ram_lr[i], disk_lr[i])
    disk_hr.close()


def test_crops_are_aligned_keyed_and_augmented(pairs_dir):
    lr_cache, hr_cache = _caches(pairs_dir)
    patches = TrainPatches(lr_cache, hr_cache, scale=4, patch_size=8, seed=42)
    lr, hr = patches[(0, 3)]
    assert lr.shape == (3, 8, 8) and hr.shape == (3, 32, 32) and lr.dtype == torch.uint8
    # aligned: the HR patch shrunk by the MATLAB resize is close to the LR patch (away from patch borders)
    shrunk = imresize(hr.permute(1, 2, 0).numpy(), 1 / 4).astype(int)
    assert np.abs(shrunk[2:-2, 2:-2] - lr.permute(1, 2, 0).numpy()[2:-2, 2:-2].astype(int)).mean() < 3
    again = patches[(0, 3)]
    assert torch.equal(again[0], lr) and torch.equal(again[1], hr)
    assert any(not torch.equal(patches[(e, 3)][0], lr) for e in range(1, 5))


def test_collate_drops_none_and_counts():
    good = (torch.zeros(3, 4, 4, dtype=torch.uint8), torch.zeros(3, 16, 16, dtype=torch.uint8))
    batch, dropped = collate_drop_none([good, None, good, None])
    assert dropped == 2 and batch[0].shape == (2, 3, 4, 4)
    assert collate_drop_none([None, None]) == (None, 2)


def test_epoch_batches_resume_and_shard():
    full = list(EpochBatches(40, 4, seed=42, epoch=3))
    assert list(EpochBatches(40, 4, seed=42, epoch=3, start=6 * 4)) == full[6:]   # start: a sample position
    rank0 = [i for b in EpochBatches(40, 4, 42, 3, rank=0, world=2) for i in b]
    rank1 = [i for b in EpochBatches(40, 4, 42, 3, rank=1, world=2) for i in b]
    assert not set(rank0) & set(rank1) and len(rank0) == len(rank1) == 20
    assert list(EpochBatches(40, 4, 42, 4)) != full


def test_device_patches_equal_the_dataloader_path(tmp_path):
    """The GPU path (run here on the CPU) cuts bit-identical batches, drops the same samples."""
    folder = make_pairs(tmp_path / "d", count=5, hr_side=64)
    write_png(folder / "lr" / "wide.png", imresize(np.zeros((48, 96, 3), np.uint8) + 90, 1 / 4))  # another size
    write_png(folder / "hr" / "wide.png", np.zeros((48, 96, 3), np.uint8) + 90)
    broken = folder / "hr" / "img_002.png"
    broken.write_bytes(broken.read_bytes()[:200])   # header fine, pixels cut off: fails to decode, dropped
    lr_cache, hr_cache = _caches(folder)
    patches = TrainPatches(lr_cache, hr_cache, scale=4, patch_size=8, seed=5, patches_per_image=6, colour=True)
    on_device = DevicePatches(patches, "cpu")
    assert len(on_device) == len(patches) == 36
    total_dropped = 0
    for epoch in range(3):
        for keys in EpochBatches(len(patches), 6, seed=5, epoch=epoch):  # 6 batches: every key
            expected, dropped = collate_drop_none([patches[k] for k in keys])
            got, got_dropped = on_device.batch(keys)
            assert got_dropped == dropped
            total_dropped += dropped
            assert (got is None) == (expected is None)
            if got is not None:
                assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert total_dropped == 3 * 6   # every patch of the broken image, every epoch
    # the colour augmentation: the same pixels, reordered or inverted, and both kinds occur
    plain = TrainPatches(lr_cache, hr_cache, scale=4, patch_size=8, seed=5, patches_per_image=6)
    kinds = set()
    for i in range(30):
        if plain[(0, i)] is None:
            continue
        (lr, hr), (lr_c, hr_c) = plain[(0, i)], patches[(0, i)]
        _, _, *_, invert, order = crop_draws(5, 0, i, lr.shape[1], lr.shape[2], 8)[0].tolist()
        perm = torch.as_tensor(CHANNEL_ORDERS[order])
        expect = 255 - hr[perm] if invert else hr[perm]
        assert torch.equal(hr_c, expect) and torch.equal(lr_c, 255 - lr[perm] if invert else lr[perm])
        kinds.add((invert, order))
    assert len({k[0] for k in kinds}) == 2 and len({k[1] for k in kinds}) >= 4
