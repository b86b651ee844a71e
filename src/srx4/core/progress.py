"""Progress that suits where the output goes: a live tqdm bar (rate, ETA) on a
terminal; one plain line about every minute when stderr is a file or a Kaggle
log (a redrawn bar floods those); nothing with quiet=True (every CLI's --quiet,
passed down to where its bars are made). SRX4_PROGRESS_INTERVAL sets the plain lines' interval (s).

    for path in progress(files, desc="score", unit="img"):
        ...
"""
import os
import sys
import time

from tqdm import tqdm

PLAIN_INTERVAL_S = 60.0


def plain_interval() -> float:
    try:
        return float(os.environ.get("SRX4_PROGRESS_INTERVAL", PLAIN_INTERVAL_S))
    except ValueError:
        return PLAIN_INTERVAL_S


class PlainProgress:
    """The non-terminal form: `desc: 120/500 img (24%), 1.9 img/s, about 3m20s left`."""

    def __init__(self, iterable=None, total=None, desc="", unit="it", interval=None):
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.interval = plain_interval() if interval is None else interval
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

    def _amount(self, value: float) -> str:
        if self.unit != "B":
            return f"{value:.2f}" if isinstance(value, float) else str(value)
        for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if value >= size:
                return f"{value / size:.2f} {unit}"
        return f"{value:.0f} B"

    def line(self, now: float) -> str:
        rate = self.n / max(now - self.start, 1e-9)
        unit = "" if self.unit == "B" else f" {self.unit}"
        text = f"{self.desc}: {self._amount(self.n)}"
        if self.total:
            text += (f"/{self._amount(self.total)}{unit} ({100 * self.n / self.total:.0f}%), "
                     f"{self._amount(rate)}{unit}/s")
            left = (self.total - self.n) / rate if rate > 0 else 0
            text += f", about {int(left // 60)}m{int(left % 60):02d}s left"
        else:
            text += f"{unit}, {self._amount(rate)}{unit}/s"
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
