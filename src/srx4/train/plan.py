"""The session plan: how a run fits a fixed session (a 12-hour Kaggle kernel) with the test
set predicted and the CSV written before it ends.

    session  = what the session had used before training (SRX4_SESSION_START, set by the
               kernel at its start; else this process's start)
             + training + the final check and start-up (inside the margin)
             + predicting the test set (x8 TTA when asked and it fits) + the CSV + margin

Training gets what is left; under --time-limit too, the smaller of the two. The plan is
logged before the first step and again, with the measured step time, after the first
steps; plan.json in the run folder keeps it for the kernel, which reads it after training
to decide on TTA with the time really left (`tta_fits`).
"""
from dataclasses import asdict, dataclass, fields

from srx4.core import paths

CSV_S_PER_HR_MEGAPIXEL = 0.1   # base64 CSV of 500 1080p PNGs: 20 s measured (0.02 s/MP); x5 for rle and slow disks
IO_S_PER_HR_MEGAPIXEL = 0.1    # decode the LR, encode the SR PNG (level 1), beside the forward passes
FORWARD_SLACK = 1.25           # the forward estimate is timed on a warm model: model load, tiles' overlap


def test_set_shape(fallback_size: tuple) -> tuple:
    """(frames, (w, h), where from) of the test set predict.py will read: the count of its test
    folder and its first image's size, else 500 frames of `fallback_size` (the training LR)."""
    from srx4.image.codec import ImageError, image_size, list_images
    try:
        images = list_images(paths.default_test_dir())
        return len(images), image_size(images[0]), "the test folder"
    except (OSError, IndexError, ImageError):
        return 500, fallback_size, "no test folder found: 500 frames of the training size assumed"


def session_start(fallback: float) -> float:
    start = paths.session_start()
    return fallback if start is None else start


def minutes(seconds: float) -> str:
    """A duration as people read it: 40 s, 12.5 min, 10.25 h."""
    return (f"{seconds / 3600:.2f} h" if seconds >= 5400 else f"{seconds / 60:.1f} min" if seconds >= 90
            else f"{seconds:.0f} s")


@dataclass
class SessionPlan:
    session_s: float          # the session's length (0: no session, only --time-limit)
    started: float            # epoch seconds when the session started
    time_limit_s: float       # --time-limit in seconds (0 = none)
    test_frames: int          # test images to predict
    test_size: str            # "WxH" of the first, or how they were assumed
    predict_s: float          # predicting them without TTA (forward x slack + decode and PNG)
    tta_asked: bool           # the recipe asks for x8 TTA
    tta_s: float              # the same with x8 TTA
    csv_s: float              # writing the CSV
    margin_s: float           # kept spare

    @classmethod
    def make(cls, cfg, forward_s: float, frames: int, size: tuple, created: float):
        """From the settings, the forward-pass estimate for `frames` LR frames of `size`
        (w, h) without TTA, and the process's start."""
        megapixels = frames * size[0] * size[1] * cfg.scale ** 2 / 1e6
        io_s = IO_S_PER_HR_MEGAPIXEL * megapixels
        return cls(session_s=cfg.session_hours * 3600, started=session_start(created),
                   time_limit_s=cfg.time_limit * 3600, test_frames=frames, test_size=f"{size[0]}x{size[1]}",
                   predict_s=forward_s * FORWARD_SLACK + io_s, tta_asked=cfg.predict_tta,
                   tta_s=8 * forward_s * FORWARD_SLACK + io_s, csv_s=CSV_S_PER_HR_MEGAPIXEL * megapixels + 30,
                   margin_s=cfg.margin_minutes * 60)

    @classmethod
    def from_record(cls, record: dict):
        """The plan a plan.json holds (the kernel reads it after training)."""
        return cls(**{f.name: record[f.name] for f in fields(cls)})

    def after_training_s(self, tta: bool) -> float:
        """What the session needs after training: predict, CSV, margin."""
        return (self.tta_s if tta else self.predict_s) + self.csv_s + self.margin_s

    def tta_fits(self, now: float) -> bool:
        """Whether predicting with the asked TTA fits in what is left of the session at `now`
        (with no more training): the plan's choice before training, the kernel's after."""
        return self.tta_asked and (not self.session_s or
                                   self.started + self.session_s - now >= self.after_training_s(True))

    def training_s(self, now: float) -> float:
        """Seconds of training from `now` (0 = no limit): the session's rest after predicting
        (with TTA when it fits), the CSV and the margin, and --time-limit, whichever is less."""
        limits = [self.time_limit_s] if self.time_limit_s else []
        if self.session_s:
            left = self.started + self.session_s - now
            limits.append(max(0.0, left - self.after_training_s(self.tta_fits(now))))
        return min(limits) if limits else 0.0

    def lines(self, now: float, step_s: float = 0.0, steps_per_epoch: int = 0) -> list:
        """The plan as log lines; with the measured step time, what the training time buys."""
        train_s = self.training_s(now)
        if self.session_s:
            head = (f"session plan: a {minutes(self.session_s)} session, {minutes(now - self.started)} used before "
                    f"training; training {minutes(train_s)}")
        else:
            head = f"plan: training {minutes(train_s)} (--time-limit)"
        if step_s > 0:
            steps = train_s / step_s
            head += (f" = about {steps:,.0f} steps at the measured {step_s:.3f} s a step"
                     + (f" ({steps / steps_per_epoch:.1f} epochs)" if steps_per_epoch else ""))
        tta = ("" if not self.tta_asked else ", with x8 TTA as asked" if self.tta_fits(now) else
               ", WITHOUT the asked x8 TTA: it would not fit in the session")
        return [head + ", then the final check",
                f"  then predicting {self.test_frames} test frames of {self.test_size}: {minutes(self.predict_s)} "
                f"(x8 TTA: {minutes(self.tta_s)}){tta}; the CSV {minutes(self.csv_s)}; "
                f"{minutes(self.margin_s)} spare (--margin-minutes)"]

    def record(self, now: float) -> dict:
        """plan.json: the plan's figures and the training time it gave."""
        return {**asdict(self), "planned_at": now, "training_s": self.training_s(now)}
