"""The small rules the training loop (train/trainer.py) steps by, each one object with
its own tests (tests/test_loop_rules.py):

- `RunClock`: rank 0's seconds used against the time limit;
- `StepAgreement`: what every DDP rank must agree on before each step (whether some
  rank lacks its batch; rank 0's clock), one host sync a step;
- `BadSteps`: stop after --max-bad-steps skipped steps in a row;
- `TimeLimit`: stop when the clock passes --time-limit or the session plan;
- `Patience`: stop after --patience epochs without a better validation figure;
- `EpochTally`: an epoch's losses, dropped samples and skipped steps, for its log line.

Each stop rule returns the reason (one line) or None.
"""
import time
from dataclasses import dataclass, field

from srx4.core import distributed


class RunClock:
    """Seconds rank 0 has used, plus the last validation's (room for one more). Every other
    rank reads 0: only rank 0's reading is ever used, shared in the steps' reductions, so
    the learning rate and the stop are the same on every rank (a rank's own clock would
    give each its own rate, and DDP never re-syncs the weights)."""

    def __init__(self, is_main: bool, started: float = None):
        self.is_main, self.started, self.last_val_s = is_main, time.time() if started is None else started, 0.0

    def __call__(self) -> float:
        return time.time() - self.started + self.last_val_s if self.is_main else 0.0


def lost(item) -> float:
    """1 when a rank's batch item (batch or None, dropped) has no batch: every sample failed to load."""
    return 1.0 if item is not None and item[0] is None else 0.0


class StepAgreement:
    """Before each step every rank must know (a) whether some rank lacks its batch: then all
    skip the step, or DDP's collectives hang; (b) rank 0's clock, for the learning rate and
    the stop. Agreed with a sync of its own at an epoch's start and after a skipped step;
    otherwise carried in the step's own reduction (`share` in, `after_step` out), one host
    sync a step. `missing` and `used_s` hold the agreement for the step about to run."""

    def __init__(self, world: int, device, clock):
        self.world, self.device, self.clock = world, device, clock
        self.missing, self.used_s = False, 0.0

    def agree(self, upcoming):
        """A sync of its own: at an epoch's first batch, and after a skipped step."""
        some_lost, self.used_s = distributed.agree_values((lost(upcoming), self.clock()), self.world, self.device)
        self.missing = some_lost > 0

    def share(self, upcoming) -> tuple:
        """What this rank adds to the step's reduction: its next batch lost, its clock."""
        return lost(upcoming), self.clock()

    def after_step(self, shared):
        """The step's reduction summed over the ranks: the agreement for the next step."""
        self.missing, self.used_s = shared[0] > 0, shared[1]


class BadSteps:
    """Skipped steps (a non-finite loss or gradient, on every rank alike) in a row; the run
    stops at `limit` of them, last.ckpt holding the last good state."""

    def __init__(self, limit: int):
        self.limit, self.in_row = limit, 0

    def after(self, applied: bool):
        """Count one step: the reason to stop at the limit, else None."""
        self.in_row = 0 if applied else self.in_row + 1
        return f"{self.in_row} steps in a row skipped" if self.in_row >= self.limit else None


class TimeLimit:
    """The training time allowed (seconds; 0 = none) and where it came from."""

    def __init__(self, seconds: float, why: str):
        self.seconds, self.why = seconds, why

    def share(self, used_s: float) -> float:
        """Used time as a share of the limit (0 without one): the schedule's position."""
        return used_s / self.seconds if self.seconds else 0.0

    def reached(self, used_s: float):
        return f"{self.why} reached" if self.seconds and used_s > self.seconds else None


class Patience:
    """Stop after `epochs` finished epochs without a better validation figure (0 = never)."""

    def __init__(self, epochs: int, label: str):
        self.epochs, self.label = epochs, label

    def reached(self, since_best: int):
        if self.epochs and since_best >= self.epochs:
            return f"no better validation {self.label} for {self.epochs} epochs (--patience)"
        return None


@dataclass
class EpochTally:
    losses: list = field(default_factory=list)   # the applied steps' losses
    dropped: int = 0                              # samples that failed to load, or lost with a skipped step
    skipped: int = 0                              # steps not applied (non-finite), on every rank alike

    def add(self, step):
        """A train_step result: its loss, or None when it was skipped."""
        if step.loss is None:
            self.skipped += 1
        else:
            self.losses.append(step.loss)

    @property
    def mean_loss(self) -> float:
        return sum(self.losses) / max(len(self.losses), 1)
