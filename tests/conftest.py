"""Shared fixtures: small real image pairs (crops of scikit-image's photos, LR by
the MATLAB-compatible resize) and helpers to run the CLI scripts for real."""
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# Under pytest-xdist (pytest.ini: -n auto) each worker, and every script it runs, gets its
# share of the cores: two workers on 2 cores with 2 threads each would oversubscribe them.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1)
                                                     // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import numpy as np  # noqa: E402 (after the thread count, which torch reads at import)
import pytest  # noqa: E402

from srx4.image.codec import read_image, write_png
from srx4.image.resize import imresize

# Every test sees the same CPU: fp32 prediction, whether or not this CPU has native bf16
# (the bf16 path has its own tests, which ask for it explicitly).
os.environ["SRX4_CPU_BF16"] = "0"

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BENCHMARKS = REPO / "benchmarks"     # Set5 and Set14, shipped with the repo


def photo_crops(count: int, hr_side: int):
    """`count` real HR crops (hr_side x hr_side, RGB uint8) from scikit-image photos."""
    from skimage import data
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()]
    crops = []
    for k in range(count):
        photo = photos[k % len(photos)]
        y = (37 * k) % (photo.shape[0] - hr_side) // 4 * 4
        x = (53 * k) % (photo.shape[1] - hr_side) // 4 * 4
        crops.append(np.ascontiguousarray(photo[y:y + hr_side, x:x + hr_side]))
    return crops


def make_pairs(folder: Path, count: int = 8, hr_side: int = 64, scale: int = 4) -> Path:
    """folder/lr and folder/hr with `count` real pairs named img_000.png ..."""
    for k, hr in enumerate(photo_crops(count, hr_side)):
        write_png(folder / "hr" / f"img_{k:03d}.png", hr)
        write_png(folder / "lr" / f"img_{k:03d}.png", imresize(hr, 1 / scale))
    return folder


@pytest.fixture
def pairs_dir(tmp_path):
    return make_pairs(tmp_path / "data", count=8)


# A tiny but real configuration: every training subprocess in the tests uses it.
TINY = ["--num-blocks", "1", "--channels", "8", "--batch-size", "4", "--patch-size", "8", "--patches-per-image", "2",
        "--device", "cpu", "--threads", "1", "--sample-every", "1"]


# What an interpreter reads when it starts: a run that changes one of these starts cold.
STARTUP_ENV = ("PYTHONPATH", "PYTHONHOME", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "LD_PRELOAD", "SRX4_CPU_BF16")


class WarmPython:
    """tests/helpers/warm_python.py, started once per test process: each script run is a
    child forked from an interpreter that has imported torch and matplotlib already."""

    def __init__(self, env: dict):
        self.env = env
        self.proc = subprocess.Popen([sys.executable, str(REPO / "tests/helpers/warm_python.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     cwd=REPO, start_new_session=True)

    pid = None          # the script run under way, if any

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, argv, env, cwd, timeout):
        import select
        import signal
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            request = {"script": argv[1], "args": argv[2:], "cwd": str(cwd), "env": env,
                       "stdout": str(out), "stderr": str(err)}
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            pid = self.pid = json.loads(self.proc.stdout.readline())["pid"]
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                os.killpg(pid, signal.SIGKILL)
            rc = json.loads(self.proc.stdout.readline())["rc"]
            self.pid = None
            stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
        if not ready:
            raise subprocess.TimeoutExpired(argv, timeout, stdout, stderr)
        return subprocess.CompletedProcess(argv, rc, stdout, stderr)


_warm = {}


def run_script(script: str, *args, work=None, env_extra=None, check=True, timeout=300, cwd=None, slot=0):
    """Run src/<script> (or a script at a path) in a process of its own with `work` as its
    writable root (logs/, submissions/, data/); returns the CompletedProcess (text). The
    process is forked from a warm interpreter (WarmPython; `slot` k > 0: the k-th of this
    test process's servers, for runs at the same time) unless the run changes what an
    interpreter reads when it starts, or SRX4_COLD_SCRIPTS=1 asks for a fresh
    `python src/<script>` every time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env.update(PYTHONUNBUFFERED="1", SRX4_KAGGLE_ROOT=str(Path(work or cwd or REPO) / "no-kaggle"))
    if work:
        env["SRX4_WORK_DIR"] = str(work)
    env.update(env_extra or {})
    argv = [sys.executable, str(REPO / "src" / script), *map(str, args)]      # an absolute path stays itself
    warm = (os.environ.get("SRX4_COLD_SCRIPTS", "") in ("", "0")
            and "MUTANT_UNDER_TEST" not in os.environ      # mutmut reaps any child: a long-lived server confuses it
            and all(env.get(k) == os.environ.get(k) for k in STARTUP_ENV))
    if warm:
        if not (_warm.get(slot) and _warm[slot].alive()):
            _warm[slot] = WarmPython({**os.environ, "PYTHONUNBUFFERED": "1"})
        done = _warm[slot].run(argv, env, cwd or REPO, timeout)
    else:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd or REPO)
    if check and done.returncode != 0:
        raise AssertionError(f"{script} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def run_ranks(script: str, *args, work, port: int, world: int = 2, env_extra=None, timeout=300):
    """What `torchrun --nproc_per_node=<world>` does for a CPU run, without its launcher's
    start-up: `world` processes of src/<script> (or a path) at once, each forked from a warm
    interpreter of its own, with the variables torchrun gives a rank (RANK, LOCAL_RANK,
    WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT; one thread each); the process
    group forms through env:// as under torchrun. A rank that fails takes the others down,
    as torchrun's agent does (with SRX4_COLD_SCRIPTS=1 the others end by `timeout`).
    Asserts every rank exits 0; returns their CompletedProcesses. torchrun itself is run by
    test_ddp_two_processes_validate_like_one, gpu_check's ddp section and the kernel tests."""
    import threading
    import signal
    results = [None] * world

    def rank(r):
        env = {**(env_extra or {}), "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(world),
               "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1"}
        try:
            results[r] = run_script(script, *args, work=work, env_extra=env, check=False, timeout=timeout, slot=r)
        except subprocess.TimeoutExpired as late:
            results[r] = subprocess.CompletedProcess(late.cmd, -9, f"{late.stdout or ''}",
                                                     f"{late.stderr or ''}\n(killed after {timeout} s)")
        if results[r].returncode != 0:                     # the others would wait for it in a collective
            for k in range(world):
                server = _warm.get(k)
                if k != r and results[k] is None and server is not None and server.pid:
                    try:
                        os.killpg(server.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = sorted((done.returncode < 0, r) for r, done in enumerate(results) if done.returncode != 0)
    assert not failed, (    # the rank that failed first is named, not one taken down after it
        f"rank {failed[0][1]} of {script} failed ({results[failed[0][1]].returncode}):\n"
        + "\n".join(f"--- rank {k}:\n{d.stdout[-2000:]}\n{d.stderr[-2000:]}" for k, d in enumerate(results)))
    return results


def needs_shared(path: str):
    """Skip a test whose ../shared data is absent, except under CI (CI=true): there a test
    that cannot run is a failure, never a silent skip."""
    if (SHARED / path).exists():
        return lambda test: test
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        def failing(test):
            @functools.wraps(test)
            def fail(*args, **kwargs):
                pytest.fail(f"../shared/{path} is missing and CI=true: this test must run in CI, not skip")
            return fail
        return failing
    return pytest.mark.skip(reason=f"../shared/{path} not present")


def need_module(name: str):
    """Import an optional package (requirements-extras.txt), or skip the test with what to
    install; under CI (CI=true), where .ci/run installs the extras, a failure instead."""
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError:
        reason = f"{name} not installed (pip install -r requirements-extras.txt)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason}, and CI=true: this test must run in CI")
        pytest.skip(reason)


def held_out_pairs(folder: Path, hr_side: int = 128, scale: int = 4) -> Path:
    """folder/lr and folder/hr from Set14 photos (shipped in benchmarks/), which no training
    fixture crops from: images a model has never seen."""
    for name in ("baboon", "comic", "pepper", "zebra"):
        hr = read_image(BENCHMARKS / "Set14" / "HR" / f"{name}.png")
        y, x = (hr.shape[0] - hr_side) // 8 * 4, (hr.shape[1] - hr_side) // 8 * 4
        crop = np.ascontiguousarray(hr[y:y + hr_side, x:x + hr_side])
        write_png(folder / "hr" / f"{name}.png", crop)
        write_png(folder / "lr" / f"{name}.png", imresize(crop, 1 / scale))
    return folder


# A small run that really learns (about 30 s on 2 cores; +1 dB over bicubic on its validation)
LEARNING = ["--num-blocks", "2", "--channels", "16", "--batch-size", "8", "--patch-size", "16",
            "--patches-per-image", "16", "--epochs", "10", "--learning-rate", "2e-3", "--val-fraction", "0.25",
            "--device", "cpu", "--sample-every", "0"]


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A folder `build(folder)` fills, made once per test session even under pytest-xdist:
    the first worker builds it under a file lock in the session's common temp folder, the
    others wait for it and reuse it. Treat it as read-only (copy it to change it)."""
    from filelock import FileLock          # a dependency of torch
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / f"built_{name}"
    with FileLock(str(root / f"built_{name}.lock")):
        if not (folder / ".done").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder)
            (folder / ".done").touch()
    return folder


def _train_learned(work: Path):
    data = make_pairs(work / "data" / "train", count=20, hr_side=128)
    run_script("train.py", "--data", data, *LEARNING, "--run", "learned", work=work)
    held_out_pairs(work / "data" / "test")


@pytest.fixture(scope="session")
def learned(tmp_path_factory):
    """(work dir, run dir, held-out test folder): one trained run shared by every test
    that needs a model better than bicubic, trained once per test session (once for all
    xdist workers: each gets its own copy of the work dir, so tests that write into it
    never meet another worker's files)."""
    built = built_once(tmp_path_factory, "learned", _train_learned)
    work = tmp_path_factory.mktemp("learned")
    shutil.copytree(built, work, dirs_exist_ok=True, symlinks=True)
    run_dir = work / "logs" / "learned"
    last = work / "logs" / "last_run.json"            # it names the folder it was trained in: this copy now
    last.write_text(json.dumps({**json.loads(last.read_text()), "dir": str(run_dir.resolve())}))
    return work, run_dir, work / "data" / "test"


def pytest_collection_modifyitems(config, items):
    """The long end-to-end runs (marked slow) first: the workers then share them out at the
    start instead of one worker finishing a long test alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per core, at most 4 (the end-to-end tests each run a training
    subprocess; more workers than that contend for memory bandwidth more than they gain)."""
    return max(1, min(4, os.cpu_count() or 1))


@pytest.fixture
def free_port():
    """A TCP port free now, for torchrun's rendezvous (two test runs on one machine never collide)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def cold_resize_caches():
    """Under mutmut each mutant's test process is forked from one that already ran the
    tests: the resize weights cached there would hide a mutated kernel. Start cold."""
    if os.environ.get("MUTANT_UNDER_TEST"):
        from srx4.image import resize as imresize
        for cached in (imresize.contributions, imresize.contributions_on, imresize.phase_taps,
                       imresize.phase_taps_on):
            cached.cache_clear()
    yield


@pytest.fixture(scope="session")
def swinir(tmp_path_factory):
    """A released-model-shaped file: a small SwinIR x4 with random weights, as a .pth (the
    foreign start of --init-weights and of the srgb recipe)."""
    need_module("spandrel")
    from spandrel.architectures.SwinIR import SwinIR
    import torch
    torch.manual_seed(0)
    net = SwinIR(upscale=4, in_chans=3, img_size=32, window_size=8, img_range=1.0, depths=[2], embed_dim=24,
                 num_heads=[2], mlp_ratio=2, upsampler="pixelshuffledirect", resi_connection="1conv")
    path = tmp_path_factory.mktemp("foreign") / "4x_tiny_SwinIR.pth"
    torch.save({"params": net.state_dict()}, path)       # the layout SwinIR's releases use
    return path
