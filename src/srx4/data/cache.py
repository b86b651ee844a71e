"""The decode-once image cache: every training and validation image as uint8 RGB.

`ImageCache(paths, sizes, ...)`; `cache[i]` is (H, W, 3) uint8, or None for a
file that failed to decode (`cache.failures` names it and says why).

- In RAM when the images fit the budget and one process trains.
- Else one memory-mapped file, `srx4-cache-<key>.u8` in `cache_dir`, where the
  key is a hash of the files (paths, sizes, modification times). Under DDP
  every rank maps the same file: rank 0 decodes it once, the others wait on the
  file system (not on a collective, which would time out during a long
  decode) and the kernel's page cache holds one copy for all of them.
- Its life: a run holds a shared lock (flock) on `srx4-cache-<key>.lock`
  while it uses the file; the last process to close deletes it. A killed run
  leaves it behind, but its lock dies with it: the next start reuses a
  complete file of the same key (`.json` beside it says complete) and deletes
  any other cache that no live process holds. So caches never pile up.
- Before filling a file the free disk is checked; on Kaggle the cache may not
  go into /kaggle/working (its 20 GB are the kernel's output).
"""
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from srx4.core.errors import UserError
from srx4.core import paths
from srx4.core.system import available_ram_bytes
from srx4.image.codec import ImageError, read_image
from srx4.core.progress import progress

PREFIX = "srx4-cache-"
DISK_MARGIN = 1 << 30        # keep this much free beyond the cache itself


class CacheError(UserError, ValueError):
    """The cache cannot be placed or filled; the message says where and why."""


def cache_key(paths_, shapes) -> str:
    """A hash of the files a cache holds: same files, same order, unchanged -> same key."""
    h = hashlib.sha256()
    for path, shape in zip(paths_, shapes):
        try:
            st = os.stat(path)
            stamp = (st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = (-1, -1)
        h.update(f"{os.path.abspath(path)}|{shape}|{stamp}\n".encode())
    return h.hexdigest()[:20]


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir())


def check_cache_dir(cache_dir: Path):
    """Refuse a cache inside Kaggle's output folder."""
    if paths.on_kaggle():
        working = paths.work_dir().resolve()
        resolved = cache_dir.resolve()
        if resolved == working or working in resolved.parents:
            raise CacheError(f"--cache-dir {cache_dir}: inside {working}, Kaggle's 20 GB output folder; "
                             f"leave --cache-dir empty (the temp folder, {default_cache_dir()}) or pick another disk")


def _try_lock(fd, mode) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _remove(stem: Path):
    for suffix in (".u8", ".json", ".build", ".lock"):
        stem.with_name(stem.name + suffix).unlink(missing_ok=True)


def _open_locked(path: Path, mode) -> int:
    """Open `path` (created if missing) and flock it in `mode`, making sure the locked file is
    the one at `path` now (a sweeper may delete it between our open and our flock)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, mode)
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def sweep_stale(cache_dir: Path, keep: str = "") -> list:
    """Delete the caches in `cache_dir` that no live process holds (runs killed earlier),
    except the one named `keep`. Returns what was deleted."""
    removed = []
    for lock_path in sorted(cache_dir.glob(PREFIX + "*.lock")):
        stem = lock_path.with_suffix("")
        if stem.name == keep:
            continue
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except OSError:
            continue
        try:
            if _try_lock(fd, fcntl.LOCK_EX):    # nobody holds it: its run is gone
                _remove(stem)
                removed.append(stem.name)
        finally:
            os.close(fd)
    for data in sorted(cache_dir.glob(PREFIX + "*.u8")):  # a data file with no lock: an older version's
        if not data.with_suffix(".lock").exists() and data.with_suffix("").name != keep:
            data.unlink(missing_ok=True)
            removed.append(data.name)
    return removed


class ImageCache:
    """uint8 RGB images decoded once; `cache[i]` is (H, W, 3) or None if undecodable.

    sizes: (width, height) per path from the headers, used to lay out the file.
    shared: several processes (DDP ranks) use one file; `builder` decodes it,
    the others wait for it. log: a function for one-line messages."""

    def __init__(self, paths_, sizes, ram_budget: int = None, cache_dir=None, desc="decode", workers=None,
                 shared: bool = False, builder: bool = True, log=print, quiet: bool = False):
        self.paths = [str(p) for p in paths_]
        self.failures = {}  # path -> reason
        self._shapes = [(h, w, 3) for (w, h) in sizes]
        self.nbytes = sum(h * w * 3 for h, w, _ in self._shapes)
        budget = available_ram_bytes() // 2 if ram_budget is None else ram_budget
        self.on_disk = shared or self.nbytes > budget
        self._arrays = [None] * len(self.paths)
        self._mm, self._lock_fd, self._stem, self._valid = None, None, None, None
        self._workers = workers or min(8, os.cpu_count() or 1)
        self._desc, self._quiet = desc, quiet
        if not self.on_disk:
            for i, img in self._decode():
                self._arrays[i] = img
            log(f"image cache: {self.nbytes / 2**30:.2f} GiB of decoded images in RAM")
            return
        cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        check_cache_dir(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [int(np.prod(s)) for s in self._shapes])
        self._offsets = offsets[:-1].astype(np.int64)
        key = cache_key(self.paths, self._shapes)
        self._stem = cache_dir / f"{PREFIX}{key}"
        self._mm_path = self._stem.with_name(self._stem.name + ".u8")
        self._meta_path = self._stem.with_name(self._stem.name + ".json")
        try:
            # held shared for the whole run: no other run's sweep can take the cache away
            self._lock_fd = _open_locked(self._stem.with_name(self._stem.name + ".lock"), fcntl.LOCK_SH)
            if builder:
                removed = sweep_stale(cache_dir, keep=self._stem.name)
                if removed:
                    log(f"image cache: removed {len(removed)} stale cache(s) of killed runs from {cache_dir}")
                reused = self._build()
            else:
                while not self._complete():   # rank 0 decodes; no collective to time out meanwhile
                    time.sleep(0.2)
                reused = True
            meta = json.loads(self._meta_path.read_text())
        except BaseException:
            self.close()
            raise
        self._valid = np.array(meta["valid"], dtype=bool)
        self.failures = meta["failures"]
        if builder:
            how = "reused (left complete by an earlier run)" if reused else "written"
            log(f"image cache: {self.nbytes / 2**30:.2f} GiB on disk at {self._mm_path}, {how}; "
                f"{'shared by every rank, ' if shared else ''}removed when the run ends")

    def _build(self) -> bool:
        """Decode into the file unless a complete one of this key is there. Returns reused."""
        build_fd = _open_locked(self._stem.with_name(self._stem.name + ".build"), fcntl.LOCK_EX)
        try:                                    # one builder per key; a second one waits, then reuses
            if self._complete():
                return True
            self._meta_path.unlink(missing_ok=True)
            free = shutil.disk_usage(self._mm_path.parent).free
            have = self._mm_path.stat().st_size if self._mm_path.exists() else 0
            if free + have < self.nbytes + DISK_MARGIN:
                raise CacheError(f"image cache: {self.nbytes / 2**30:.1f} GiB needed in {self._mm_path.parent} "
                                 f"but {(free + have) / 2**30:.1f} GiB free: pass --cache-dir on a larger disk, "
                                 f"or train on fewer images")
            mm = np.memmap(self._mm_path, dtype=np.uint8, mode="w+", shape=(max(self.nbytes, 1),))
            valid = np.zeros(len(self.paths), dtype=bool)
            started = time.time()
            for i, img in self._decode():
                start = self._offsets[i]
                mm[start:start + img.size] = img.reshape(-1)
                valid[i] = True
            mm.flush()
            del mm
            meta = {"paths": len(self.paths), "bytes": self.nbytes, "valid": valid.tolist(),
                    "failures": self.failures, "seconds": round(time.time() - started, 1)}
            tmp = self._meta_path.with_name(self._meta_path.name + ".tmp")
            tmp.write_text(json.dumps(meta))
            os.replace(tmp, self._meta_path)                  # the "complete" mark, written last
            return False
        finally:
            os.close(build_fd)

    def _complete(self) -> bool:
        try:
            meta = json.loads(self._meta_path.read_text())
        except (OSError, ValueError):
            return False
        return (meta.get("paths") == len(self.paths) and meta.get("bytes") == self.nbytes
                and self._mm_path.is_file() and self._mm_path.stat().st_size >= max(self.nbytes, 1))

    def _decode(self):
        """Yield (i, image) for every decodable file, recording the failures."""
        def load(i):
            try:
                img = read_image(self.paths[i])
            except ImageError as err:
                return i, None, str(err)
            if img.shape != self._shapes[i]:
                return i, None, f"{self.paths[i]}: decoded size {img.shape} differs from its header"
            return i, img, None

        with ThreadPoolExecutor(self._workers) as pool:
            for i, img, error in progress(pool.map(load, range(len(self.paths))), total=len(self.paths),
                                          desc=self._desc, unit="img", leave=False,
                                          quiet=self._quiet or len(self.paths) < 50):
                if error:
                    self.failures[self.paths[i]] = error
                else:
                    yield i, img

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        if not self.on_disk:
            return self._arrays[i]
        if not self._valid[i]:
            return None
        if self._mm is None:  # opened lazily, once per process (DataLoader workers too)
            self._mm = np.memmap(self._mm_path, dtype=np.uint8, mode="r")
        start, shape = self._offsets[i], self._shapes[i]
        return self._mm[start:start + int(np.prod(shape))].reshape(shape)

    def shape(self, i):
        """(H, W, 3) of image i from its header (decodable or not)."""
        return self._shapes[i]

    def __getstate__(self):  # DataLoader workers: no lock, no open map
        state = self.__dict__.copy()
        state["_mm"], state["_lock_fd"] = None, None
        return state

    def close(self):
        """Free the images; the last process using a cache file deletes it. Idempotent."""
        self._arrays = [None] * len(self.paths)
        self._mm = None
        if self._lock_fd is None:
            return
        fd, self._lock_fd = self._lock_fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
            if _try_lock(fd, fcntl.LOCK_EX):                  # no other process holds it
                _remove(self._stem)
        finally:
            os.close(fd)


class CacheView:
    """Some images of a cache, re-indexed 0..n-1 (the training or the validation side);
    those in `left_out` (view indices: dirty pairs) read as None, like an undecodable file."""

    def __init__(self, cache: ImageCache, indices, left_out=()):
        self.cache, self.indices, self.left_out = cache, list(indices), frozenset(left_out)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return None if i in self.left_out else self.cache[self.indices[i]]

    def shape(self, i):
        return self.cache.shape(self.indices[i])
