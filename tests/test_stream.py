"""The streaming path (srx4/data/stream.py) on real pairs: the patches the cached path cuts,
the same batches with any number of workers, resumed at any sample, shared out between
ranks, holes for undecodable and dirty pairs; and the choice of path."""
import hashlib

import pytest
import torch

from conftest import make_pairs
from srx4.data.cache import ImageCache
from srx4.data.patches import TrainPatches
from srx4.data.stream import StreamEpoch, StreamWindows, choose_loading

SEED, PER, BATCH, PATCH = 5, 6, 4, 8


def windows_of(folder, names=None, min_pair_psnr=18.0):
    names = names or sorted(p.name for p in (folder / "lr").iterdir())
    return StreamWindows(names, [folder / "lr" / n for n in names], [folder / "hr" / n for n in names], 4, PATCH,
                         SEED, PER, True, min_pair_psnr)


def epoch_batches(stream, epoch, start=0, rank=0, world=1, workers=0, window=3):
    sampler = StreamEpoch(len(stream.names), PER, BATCH, SEED, rank, world, window=window)
    sampler.set_epoch(epoch, start)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, sampler=sampler, num_workers=workers)
    return list(sampler.batches(loader))


def digests(batches):
    """One hash per patch pair, in order."""
    out = []
    for batch, _ in batches:
        if batch is not None:
            out += [hashlib.sha1(lr.numpy().tobytes() + hr.numpy().tobytes()).hexdigest() for lr, hr in zip(*batch)]
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("stream") / "data", count=7, hr_side=64)


def test_an_epoch_streams_the_patches_the_cached_path_cuts(folder):
    stream = windows_of(folder)
    names = stream.names
    batches = epoch_batches(stream, epoch=3)
    assert len(batches) == 7 * PER // BATCH and all(b is not None and d == 0 for b, d in batches)
    cache = ImageCache([folder / "lr" / n for n in names] + [folder / "hr" / n for n in names],
                       [(16, 16)] * 7 + [(64, 64)] * 7, ram_budget=1 << 30, log=lambda *_: None)
    view = lambda offset: type("V", (), {"__len__": lambda s: 7, "__getitem__": lambda s, i: cache[offset + i]})()  # noqa: E731
    patches = TrainPatches(view(0), view(7), 4, PATCH, SEED, PER, True)
    cached = [patches[(3, i)] for i in range(7 * PER)]
    expected = {hashlib.sha1(lr.numpy().tobytes() + hr.numpy().tobytes()).hexdigest() for lr, hr in cached}
    got = digests(batches)
    assert set(got) <= expected and len(set(got)) == len(got) == 7 * PER // BATCH * BATCH
    # each batch mixes images: not one image's patches in a row
    assert len({d for d in got[:BATCH]}) == BATCH
    assert digests(epoch_batches(stream, epoch=4)) != got                       # another epoch, another order


def test_the_batches_do_not_depend_on_workers_and_resume_at_any_sample(folder):
    stream = windows_of(folder)
    whole = epoch_batches(stream, epoch=1)
    assert digests(epoch_batches(stream, epoch=1, workers=2)) == digests(whole)
    for step in (1, 4, 7):                                 # inside a window, at its edge, and later
        tail = epoch_batches(stream, epoch=1, start=step * BATCH)
        assert digests(tail) == digests(whole[step:]), step


def test_ranks_share_an_epoch_without_overlap_and_resume_in_step(folder):
    stream = windows_of(folder)
    ranks = [epoch_batches(stream, epoch=2, rank=r, world=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 7 * PER // (BATCH * 2)            # the same steps on every rank
    a, b = (digests(r) for r in ranks)
    assert not set(a) & set(b)
    resumed = [epoch_batches(stream, epoch=2, start=2 * BATCH * 2, rank=r, world=2) for r in range(2)]
    assert [digests(r) for r in resumed] == [digests(r[2:]) for r in ranks]


def test_undecodable_and_dirty_pairs_come_back_as_counted_holes(tmp_path):
    folder = make_pairs(tmp_path / "data", count=6, hr_side=64)
    (folder / "hr/img_003.png").write_bytes(b"not a png")
    one, two = folder / "hr/img_001.png", folder / "hr/img_002.png"
    swapped = two.read_bytes()
    two.write_bytes(one.read_bytes())
    one.write_bytes(swapped)
    stream = windows_of(folder)
    reports = []
    sampler = StreamEpoch(6, PER, BATCH, SEED, window=3)
    sampler.on_report = lambda psnr, failures: reports.append((psnr, failures))
    sampler.set_epoch(0)
    batches = list(sampler.batches(torch.utils.data.DataLoader(stream, batch_size=None, sampler=sampler)))
    assert sum(d for _, d in batches) == 3 * PER          # img_001, img_002 dirty, img_003 undecodable
    assert sum(len(b[0]) for b, _ in batches if b is not None) == 3 * PER
    psnr = {k: v for p, _ in reports for k, v in p.items()}
    failures = {k: v for _, f in reports for k, v in f.items()}
    assert sorted(n for n, (up, down) in psnr.items() if up < 18 and down < 18) == ["img_001.png", "img_002.png"]
    assert list(failures) == ["img_003.png"] and "img_003.png" in failures["img_003.png"]
    kept = windows_of(folder, min_pair_psnr=0)
    assert sum(d for _, d in epoch_batches(kept, epoch=0)) == PER    # only the undecodable one now


def test_the_path_is_chosen_by_the_budgets_and_says_why():
    gib = 1 << 30
    assert choose_loading(1 * gib, 4 * gib, 100 * gib, 1)[0] == "ram"
    assert choose_loading(1 * gib, 4 * gib, 100 * gib, 2)[0] == "disk"             # ranks share one file
    path, why = choose_loading(10 * gib, 4 * gib, 100 * gib, 1)
    assert path == "disk" and "over the RAM budget 4.00 GiB" in why
    path, why = choose_loading(300 * gib, 28 * gib, 60 * gib, 1)
    assert path == "stream" and "300.00 GiB over the RAM budget 28.00 GiB and the disk budget 60.00 GiB" in why
    assert choose_loading(1 * gib, 4 * gib, 100 * gib, 1, "stream")[0] == "stream"
    assert choose_loading(300 * gib, 28 * gib, 60 * gib, 1, "cache")[0] == "disk"


def test_figures_known_from_an_earlier_epoch_are_not_measured_again(folder):
    stream = windows_of(folder)
    reports = {}
    first = StreamEpoch(7, PER, BATCH, SEED, window=3)
    first.on_report = lambda psnr, failures: reports.update(psnr)
    first.set_epoch(1)
    measured = digests(first.batches(torch.utils.data.DataLoader(stream, batch_size=None, sampler=first)))
    known = {i: reports[n] for i, n in enumerate(stream.names)}
    again = StreamEpoch(7, PER, BATCH, SEED, window=3, known=known)
    again.set_epoch(1)
    assert digests(again.batches(torch.utils.data.DataLoader(stream, batch_size=None, sampler=again))) == measured
    known[0] = (0.0, 0.0)            # figures the worker takes as given: image 0 is now left out
    again.set_epoch(1)
    batches = list(again.batches(torch.utils.data.DataLoader(stream, batch_size=None, sampler=again)))
    assert sum(d for _, d in batches) == PER
