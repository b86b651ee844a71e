"""The rules the training loop steps by (srx4/train/loop_rules.py), each on its own:
the stop rules, the run clock, the epoch tally, and the step agreement between two real
gloo ranks."""
import json
import time
from types import SimpleNamespace

from conftest import run_ranks
from srx4.train.loop_rules import BadSteps, EpochTally, Patience, RunClock, TimeLimit, lost


def test_bad_steps_stop_only_at_the_limit_in_a_row():
    rule = BadSteps(3)
    assert [rule.after(ok) for ok in (False, False, True, False, False)] == [None] * 5   # the good step resets
    assert rule.after(False) == "3 steps in a row skipped"


def test_time_limit_and_patience_say_why_they_stop():
    limit = TimeLimit(100.0, "--time-limit of 0.03 h")
    assert limit.reached(100.0) is None and limit.reached(100.5) == "--time-limit of 0.03 h reached"
    assert limit.share(25.0) == 0.25
    unlimited = TimeLimit(0.0, "none")
    assert unlimited.reached(1e9) is None and unlimited.share(50.0) == 0.0
    patience = Patience(2, "score")
    assert patience.reached(1) is None
    assert patience.reached(2) == "no better validation score for 2 epochs (--patience)"
    assert Patience(0, "psnr").reached(100) is None


def test_clock_reads_rank0_only_and_counts_the_last_validation():
    clock = RunClock(True, started=time.time() - 10)
    assert 10 <= clock() < 11
    clock.last_val_s = 5
    assert 15 <= clock() < 16
    assert RunClock(False, started=0.0)() == 0.0


def test_epoch_tally_counts_losses_and_skips():
    tally = EpochTally()
    for loss in (0.5, None, 0.25, None):
        tally.add(SimpleNamespace(loss=loss))
    assert (tally.skipped, tally.mean_loss) == (2, 0.375)
    assert EpochTally().mean_loss == 0.0
    assert lost((None, 4)) == 1.0 and lost(("batch", 0)) == 0.0 and lost(None) == 0.0


AGREE = """
import json, sys
import torch, torch.distributed as dist
sys.path.insert(0, {src!r})
from srx4.train.loop_rules import RunClock, StepAgreement
dist.init_process_group("gloo")
rank = dist.get_rank()
clock = RunClock(rank == 0, started=0.0)
clock.started = __import__("time").time() - 7.0          # rank 0 has used about 7 s; rank 1 reads 0
agree = StepAgreement(2, torch.device("cpu"), clock)
agree.agree(("batch", 0) if rank == 0 else (None, 4))     # rank 1 lost its whole first batch
first = (agree.missing, agree.used_s)
share = agree.share(("batch", 0))                          # both have their next batch
summed = torch.tensor(share, dtype=torch.float64)
dist.all_reduce(summed)                                    # what train_step's reduction does with it
agree.after_step(summed.tolist())
print(json.dumps({{"first": first, "share": share, "after": [agree.missing, agree.used_s]}}))
dist.destroy_process_group()
"""


def test_step_agreement_between_two_gloo_ranks(tmp_path, free_port):
    """Both ranks learn that rank 1 lacks its batch (so both skip the step) and both read rank
    0's clock; after a step's reduction both agree again, with no sync of their own."""
    from conftest import REPO
    script = tmp_path / "agree.py"
    script.write_text(AGREE.format(src=str(REPO / "src")))
    results = [json.loads(r.stdout.strip().splitlines()[-1]) for r in run_ranks(script, work=tmp_path,
                                                                                port=free_port)]
    for r in results:
        assert r["first"][0] is True and 7 <= r["first"][1] < 60
        assert r["after"][0] is False and 7 <= r["after"][1] < 60
    assert results[0]["first"][1] == results[1]["first"][1]
    assert results[1]["share"] == [0.0, 0.0] and results[0]["share"][1] >= 7
