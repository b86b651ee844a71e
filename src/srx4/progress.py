"""Progress that suits where the output goes: a live tqdm bar (rate, ETA) on a
terminal; one plain line about every minute when stderr is a file or a Kaggle
log (a redrawn bar floods those); nothing with quiet=True.

    for path in progress(files, desc="score", unit="img"):
        ...
"""
import sys
import time

from tqdm import tqdm

PLAIN_INTERVAL_S = 60.0


class PlainProgress:
    """The non-terminal form: `desc: 120/500 img (24%), 1.9 img/s, about 3m20s left`."""

    def __init__(self, iterable=None, total=None, desc="", unit="it", interval=PLAIN_INTERVAL_S):
        self.iterable, self.desc, self.unit, self.interval = iterable, desc, unit, interval
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n, self.start, self.postfix = 0, time.monotonic(), ""
        self.last = self.start

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update()

    def update(self, n: int = 1):
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            print(self.line(now), file=sys.stderr, flush=True)

    def line(self, now: float) -> str:
        rate = self.n / max(now - self.start, 1e-9)
        text = f"{self.desc}: {self.n}"
        if self.total:
            text += f"/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%), {rate:.2f} {self.unit}/s"
            left = (self.total - self.n) / rate if rate > 0 else 0
            text += f", about {int(left // 60)}m{int(left % 60):02d}s left"
        else:
            text += f" {self.unit}, {rate:.2f} {self.unit}/s"
        return text + (f" ({self.postfix})" if self.postfix else "")

    def close(self):
        pass

    def set_postfix(self, **values):
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_postfix_str(self, text: str = "", **kwargs):
        self.postfix = text


def progress(iterable=None, total=None, desc="", unit="it", quiet=False, leave=True, **kwargs):
    """A tqdm bar on a terminal, `PlainProgress` otherwise, disabled with quiet."""
    if not quiet and not sys.stderr.isatty():
        return PlainProgress(iterable, total, desc, unit)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=quiet, leave=leave, **kwargs)
