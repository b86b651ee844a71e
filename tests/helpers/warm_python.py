"""A warm interpreter for the tests' script runs: the heavy third-party imports once, then
one forked process per script run.

Every CLI test runs a script of src/ in a process of its own, with its own argv, working
directory, environment, stdout, stderr and exit code. Started cold, each such process
spends 3-4 s on 2 cores importing torch, torch._dynamo (through torch.optim) and
matplotlib before the script does anything; the suite runs about 125 of them. This
server imports those libraries once (nothing of srx4, and it runs no tensor operation,
so no thread pool exists to be forked), then for each request forks a child that

- becomes its own process group (a timeout kills it with its DataLoader workers),
- takes the request's environment, working directory, argv and sys.path[0] (the
  script's folder, as `python src/x.py` has), stdin from /dev/null, stdout and
  stderr to the request's files,
- runs the script as `__main__` with runpy and leaves the way a cold interpreter does
  (an exception prints its traceback and exits 1, sys.exit(n) exits n, atexit runs).

Protocol, one JSON line each way on stdin/stdout: request {"script", "args", "cwd",
"env", "stdout", "stderr"} -> {"pid": P}, then {"rc": R} when the child ends (R < 0:
killed by signal -R). tests/conftest.py's `run_script` uses it unless the run changes
what the interpreter reads at start (PYTHONPATH, thread counts) or SRX4_COLD_SCRIPTS=1.
"""
import gc
import importlib
import json
import os
import sys

# the imports every script pays for, paid once here (torch.optim brings torch._dynamo)
PRELOAD = ("numpy", "torch", "torch._dynamo", "torch.optim", "torch.utils.data", "matplotlib", "matplotlib.figure")

PROTOCOL = sys.stdout


def answer(message: dict):
    PROTOCOL.write(json.dumps(message) + "\n")
    PROTOCOL.flush()


def child(request: dict):
    """In the forked process: become the script's process, run it; never returns."""
    os.setpgid(0, 0)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, fd)
        os.close(out)
    os.close(null)
    sys.stdin = open(0, closefd=False)
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__      # fd 1 and 2: the request's files now
    script = request["script"]
    sys.argv = [script, *request["args"]]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    import runpy
    runpy.run_path(script, run_name="__main__")   # leaves through the interpreter's own exit
    raise SystemExit(0)


def main():
    for module in PRELOAD:
        importlib.import_module(module)
    # Everything imported so far out of the collector's reach: a child's exit then does not walk (and so
    # copy, page by page) the whole inherited heap: 2.2 s -> 0.6 s of every run's exit on 2 cores
    gc.freeze()
    sys.stdout = open(os.devnull, "w")            # only answer() writes to the protocol pipe
    for line in sys.stdin:
        request = json.loads(line)
        PROTOCOL.flush()
        pid = os.fork()
        if pid == 0:
            child(request)
        answer({"pid": pid})
        _, status = os.waitpid(pid, 0)
        answer({"rc": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    main()
