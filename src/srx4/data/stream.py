"""Training on a set bigger than the RAM and disk budgets: decode in the workers, many
patches from each decoded image, a seeded order; no image cache.

`choose_loading(nbytes, ram_budget, disk_budget, world, asked)` -> (path, why): the RAM
cache, the on-disk cache, or this streaming path when the decoded set fits neither.

The streaming epoch (`StreamEpoch`): the training images in a seeded order of
(seed, epoch); rank r of `world` takes every world-th of them and reads its share in
windows of `window` images. For one window a DataLoader worker (`StreamWindows`)
decodes the pairs, checks each (srx4.data.pair_check; a dirty or undecodable pair's
patches come back as holes, counted as dropped), cuts every patch the epoch holds of
those images -- patch index i of image i % n, with `crop_draws(seed, epoch, i)`: the
very patches the cached path cuts -- and returns them in an order shuffled by
(seed, epoch, window). The main process reads the windows in order and cuts batches.

Deterministic: the batches depend on the seed, the epoch, the number of processes
and the window, never on the DataLoader workers or their timing, and a position in
the epoch (samples, all ranks together) finds the same window and offset again on
resume. Each image is decoded once an epoch (its `patches_per_image` patches come
from that one decode); a window's decoded pairs live only in the worker.
"""
import numpy as np
import torch

from srx4.data.pair_check import PairCheck, measure
from srx4.data.patches import augment, crop_draws, recolour, steps_per_epoch
from srx4.image.codec import ImageError, read_image

WINDOW = 16          # pairs a worker decodes at once (16 x 1080p pairs: about 110 MB in the worker)


def choose_loading(nbytes: int, ram_budget: int, disk_budget: int, world: int, asked: str = "auto"):
    """('ram' | 'disk' | 'stream', why): where the decoded training and validation images live."""
    gib = lambda b: f"{b / 2**30:.2f} GiB"     # noqa: E731
    if asked == "stream":
        return "stream", "--loading stream"
    if asked == "cache" or nbytes <= disk_budget or (nbytes <= ram_budget and world == 1):
        if nbytes <= ram_budget and world == 1:
            return "ram", f"decoded set {gib(nbytes)} within the RAM budget {gib(ram_budget)}"
        why = "shared by the ranks" if world > 1 and nbytes <= ram_budget else \
            f"over the RAM budget {gib(ram_budget)}"
        return "disk", f"decoded set {gib(nbytes)} {why}, within the disk budget {gib(disk_budget)}" + \
            (" (--loading cache)" if nbytes > disk_budget else "")
    return "stream", (f"decoded set {gib(nbytes)} over the RAM budget {gib(ram_budget)} and the disk budget "
                      f"{gib(disk_budget)}: each image decoded once an epoch in the workers, {WINDOW} pairs at a time")


class FilePairs:
    """Pairs read from their files on each access (validation in the streaming path), checked
    like the cache's: `lr[i]` / `hr[i]` are uint8 (H, W, 3) or None (undecodable or dirty).
    The last pair read is kept, so lr[i] then hr[i] decodes it once. `report(psnr, failures)`
    hears of each pair read, as StreamEpoch.on_report of each window."""

    def __init__(self, names, lr_paths, hr_paths, lr_sizes, scale: int, min_pair_psnr: float, report=None):
        self.names, self.lr_paths, self.hr_paths = list(names), list(lr_paths), list(hr_paths)
        self.lr_sizes, self.scale, self.check = list(lr_sizes), scale, PairCheck(min_pair_psnr)
        self.report = report
        self._last = (None, None)
        self.lr, self.hr = _Side(self, 0), _Side(self, 1)

    def __len__(self):
        return len(self.names)

    def pair(self, i):
        if self._last[0] != i:
            name = self.names[i]
            pair, psnr, failure = load_pair(self.lr_paths[i], self.hr_paths[i], self.scale, self.check, name)
            if self.report:
                self.report({} if psnr is None else {name: psnr}, {name: failure} if failure else {})
            self._last = (i, pair)
        return self._last[1]

    def __getstate__(self):
        return {**self.__dict__, "_last": (None, None), "report": None}


class _Side:
    def __init__(self, pairs: FilePairs, side: int):
        self.pairs, self.side = pairs, side

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        pair = self.pairs.pair(i)
        return None if pair is None else pair[self.side]

    def shape(self, i):
        w, h = self.pairs.lr_sizes[i]
        s = 1 if self.side == 0 else self.pairs.scale
        return (h * s, w * s, 3)


def load_pair(lr_path, hr_path, scale: int, check: PairCheck, name: str, known: float = None):
    """Decode and check one pair (`known`: its figure from an earlier epoch, not measured again):
    ((lr, hr) or None, figures (`measure`) or None, failure text or None)."""
    try:
        lr, hr = read_image(lr_path), read_image(hr_path)
    except ImageError as err:
        return None, None, str(err)
    if hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
        return None, None, f"{hr_path}: decoded size {hr.shape[:2]} is not {scale} x {lr.shape[:2]}"
    figures = measure(lr, hr, scale, check.min_psnr) if known is None else known
    return ((lr, hr) if check.record(name, figures) else None), figures, None


class StreamWindows(torch.utils.data.Dataset):
    """`windows[(epoch, window_id, image indices, known figures)]` -> the window's patches, in the window's
    shuffled order: {"lr": (K, 3, p, p) uint8, "hr": (K, 3, sp, sp) uint8 of the patches that
    loaded, "valid": (N,) bool over the window's N patch slots, "psnr": {name: (up, down) dB},
    "failures": {name: reason}}."""

    def __init__(self, names, lr_paths, hr_paths, scale: int, patch_size: int, seed: int, patches_per_image: int,
                 colour: bool, min_pair_psnr: float):
        self.names, self.lr_paths, self.hr_paths = list(names), list(lr_paths), list(hr_paths)
        self.scale, self.patch_size, self.seed = scale, patch_size, seed
        self.patches_per_image, self.colour, self.min_pair_psnr = patches_per_image, colour, min_pair_psnr

    def __len__(self):
        return len(self.names) * self.patches_per_image

    def slots(self, epoch: int, window_id: int, images):
        """(patch indices, image of each) of a window in its shuffled order: patch k of image j is
        index k * n + j (image i % n, as the cached path's TrainPatches)."""
        n, per = len(self.names), self.patches_per_image
        images = np.asarray(images, dtype=np.int64)
        index = (np.arange(per, dtype=np.int64)[None, :] * n + images[:, None]).reshape(-1)   # (G * P,)
        order = np.random.default_rng([self.seed, epoch, 10, window_id]).permutation(len(index))
        return index[order], index[order] % n

    def __getitem__(self, key):
        epoch, window_id, images, known = key
        check = PairCheck(self.min_pair_psnr)
        decoded, psnr, failures = {}, {}, {}
        for j, figure in zip(images, known):
            pair, figure, failure = load_pair(self.lr_paths[j], self.hr_paths[j], self.scale, check, self.names[j],
                                              figure)
            decoded[j] = pair
            if figure is not None:
                psnr[self.names[j]] = figure
            if failure:
                failures[self.names[j]] = failure
        index, image = self.slots(epoch, window_id, images)
        valid = np.array([decoded[j] is not None for j in image.tolist()], dtype=bool)
        p, s = self.patch_size, self.scale
        lrs, hrs = [], []
        heights = np.array([decoded[j][0].shape[0] if decoded[j] is not None else p for j in image.tolist()])
        widths = np.array([decoded[j][0].shape[1] if decoded[j] is not None else p for j in image.tolist()])
        draws = crop_draws(self.seed, epoch, index, heights, widths, p)                 # (N, 7)
        for k in np.flatnonzero(valid).tolist():
            lr_img, hr_img = decoded[int(image[k])]
            top, left, *flips, invert, order = draws[k].tolist()
            lr = lr_img[top:top + p, left:left + p]
            hr = hr_img[s * top:s * (top + p), s * left:s * (left + p)]
            lr, hr = augment(lr, hr, *flips)
            if self.colour:
                lr, hr = recolour(lr, hr, invert, order)
            lrs.append(np.ascontiguousarray(lr.transpose(2, 0, 1)))
            hrs.append(np.ascontiguousarray(hr.transpose(2, 0, 1)))
        empty = lambda side: torch.empty((0, 3, side, side), dtype=torch.uint8)   # noqa: E731
        return {"lr": torch.from_numpy(np.stack(lrs)) if lrs else empty(p),
                "hr": torch.from_numpy(np.stack(hrs)) if hrs else empty(s * p),
                "valid": torch.from_numpy(valid), "psnr": psnr, "failures": failures}


class StreamEpoch(torch.utils.data.Sampler):
    """The windows of one epoch for rank `rank` of `world`, from sample position `start`
    (all ranks together) on; a DataLoader over StreamWindows with batch_size=None reads
    them. `batches(loader)` then cuts exactly `steps` batches of `batch_size`. `known`
    (image index -> pair_check figures) holds the pairs measured so far: a worker does not
    measure those again (the figures are the same, so are the batches). Resuming with
    another number of processes continues from the same sample count, but in that
    number's order (exact only with the same number)."""

    def __init__(self, n: int, patches_per_image: int, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 window: int = WINDOW, known: dict = None):
        self.n, self.per, self.batch_size, self.seed = n, patches_per_image, batch_size, seed
        self.known = {} if known is None else known
        self.on_report = None             # called with each window's (figures, failures) as it is read
        self.rank, self.world, self.window = rank, world, window
        self.steps = steps_per_epoch(n * patches_per_image, batch_size, world)
        self.set_epoch(0, 0)

    def set_epoch(self, epoch: int, start: int = 0):
        order = np.random.default_rng([self.seed, epoch, 9]).permutation(self.n)
        mine = order[self.rank::self.world]
        if len(mine) == 0:
            mine = order[self.rank % len(order)::len(order)]
        windows = [mine[k:k + self.window] for k in range(0, len(mine), self.window)]
        need = self.steps * self.batch_size                      # samples this rank trains on this epoch
        local = start // self.world                               # samples of this rank already done
        keys, have, w = [], 0, 0
        while have < need:       # a rank short of samples (few images, uneven share) wraps around
            images = windows[w % len(windows)]
            size = len(images) * self.per
            if have + size > local:
                keys.append((epoch, w, tuple(int(i) for i in images),
                             tuple(self.known.get(int(i)) for i in images)))
            have, w = have + size, w + 1
        first = sum(len(windows[k % len(windows)]) * self.per for k in range(keys[0][1])) if keys else 0
        self.epoch, self.keys, self.skip = epoch, keys, local - first     # samples to pass over in the first window
        self.remaining = self.steps - local // self.batch_size

    def __iter__(self):
        return iter(self.keys)

    def __len__(self):
        return max(0, self.remaining)

    def batches(self, windows):
        """(batch (lr, hr) uint8 or None, dropped) x len(self), from the windows read in order;
        each window's report goes to `self.on_report(psnr, failures)` when set."""
        count, skip = len(self), self.skip
        lr_buf, hr_buf, valid_buf = [], [], []
        if count == 0:
            return
        for window in windows:
            if self.on_report is not None:
                self.on_report(window["psnr"], window["failures"])
            valid = window["valid"]
            # expand to one slot per patch (holes for the dropped), then drop the passed-over part
            at = torch.cumsum(valid.long(), 0) - 1
            lr_buf.append((window["lr"], at, valid))
            hr_buf.append(window["hr"])
            valid_buf.append(valid)
            while True:
                slots = sum(len(v) for v in valid_buf) - skip
                if slots < self.batch_size:
                    break
                yield self._cut(lr_buf, hr_buf, valid_buf, skip)
                skip += self.batch_size
                count -= 1
                if count == 0:
                    return
                # free the windows wholly passed
                while valid_buf and skip >= len(valid_buf[0]):
                    skip -= len(valid_buf[0])
                    lr_buf.pop(0), hr_buf.pop(0), valid_buf.pop(0)

    def _cut(self, lr_buf, hr_buf, valid_buf, skip):
        """The batch of slots [skip, skip + batch_size) over the buffered windows."""
        lrs, hrs, dropped, need, k = [], [], 0, self.batch_size, 0
        while need:
            lr, at, valid = lr_buf[k]
            hr = hr_buf[k]
            lo = min(skip, len(valid))
            hi = min(lo + need, len(valid))
            part = valid[lo:hi]
            if part.any():
                rows = at[lo:hi][part]
                lrs.append(lr[rows])
                hrs.append(hr[rows])
            dropped += int((~part).sum())
            need -= hi - lo
            skip = max(0, skip - len(valid))
            k += 1
        if not lrs:
            return None, dropped
        return (torch.cat(lrs), torch.cat(hrs)), dropped
