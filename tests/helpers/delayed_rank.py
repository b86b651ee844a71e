"""Run src/train.py with one torchrun rank held back right after the process group forms.

    python -m torch.distributed.run --nproc_per_node=2 tests/helpers/delayed_rank.py 1.5 [train.py flags]

Rank 1 sleeps the given seconds once `init_process_group` returns, as a rank does
whose NCCL init ends later: anything a rank decides from its own clock (a run name
from the time, a time budget) then differs between the ranks unless it is agreed.
"""
import runpy
import sys
import time
from pathlib import Path

import torch.distributed as dist

delay = float(sys.argv[1])
init = dist.init_process_group


def init_then_wait(*args, **kwargs):
    init(*args, **kwargs)
    if dist.get_rank() == 1:
        time.sleep(delay)


dist.init_process_group = init_then_wait
train = Path(__file__).resolve().parents[2] / "src" / "train.py"
sys.path.insert(0, str(train.parent))
sys.argv = [str(train), *sys.argv[2:]]
runpy.run_path(str(train), run_name="__main__")
