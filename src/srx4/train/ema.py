"""An exponential moving average of a model's weights (train.py --ema DECAY).

After every optimizer step: average <- average + (1 - d) (weights - average), with
the decay warmed up as d = min(DECAY, (1 + n) / (10 + n)) after n updates, so a
short run's average is not held near the initial weights (d is 0.5 after 8 steps,
0.9 after 80, 0.99 after 890). Buffers (BatchNorm's running statistics) are copied,
not averaged; the trainer recomputes them for the averaged weights before it
validates, as it does for the raw model. When on, the average is what is
validated, selected and saved as best; it is kept in last.ckpt with its update
count, so a resumed run continues it exactly.

    average = WeightAverage(model, 0.999)
    ... optimizer.step(); average.update(model)
    validate(average.model, ...)
"""
import copy

import torch

from srx4.core.errors import FlagError


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float, updates: int = 0):
        if not 0.0 < decay < 1.0:
            raise FlagError(f"--ema {decay}: the decay must be in (0, 1), or 0 for off")
        self.decay, self.updates = decay, updates
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)

    def decay_now(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module):
        """Move the average toward `model`'s current weights (one call per optimizer step)."""
        weight = 1.0 - self.decay_now()
        # two foreach calls, whatever the model's size: one launch each on a GPU (the loop over
        # 100 buffers of SRResNet-16 it replaces was 100 launches a step)
        torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()), weight)   # no_grad: no detach
        mine, theirs = list(self.model.buffers()), list(model.buffers())
        if mine:
            torch._foreach_copy_(mine, theirs)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict):
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
