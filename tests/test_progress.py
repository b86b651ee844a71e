"""Progress where a user waits: plain lines (with rate and ETA) when the output is not a
terminal, as in a Kaggle log, and nothing under --quiet."""
import os
import stat
import zipfile

from conftest import make_pairs, run_script

FAST = {"SRX4_PROGRESS_INTERVAL": "0"}          # a line at every step instead of one a minute


def fake_kaggle(bin_dir, archive):
    """A `kaggle` on PATH (kaggle.com is unreachable here) that lists one file and then
    writes it slowly, as a download does."""
    bin_dir.mkdir()
    script = bin_dir / "kaggle"
    script.write_text(f"""#!/bin/sh
if [ "$2" = "files" ]; then echo "name size creationDate"; echo "data.zip {archive.stat().st_size / 1e6:.3f}MB x"; exit 0; fi
out=""; while [ $# -gt 0 ]; do [ "$1" = "-p" ] && out="$2"; shift; done
python3 - "$out" <<'PY'
import sys, time
data = open("{archive}", "rb").read()
with open(sys.argv[1] + "/data.zip", "wb") as f:
    for k in range(0, len(data), len(data) // 4 + 1):
        f.write(data[k:k + len(data) // 4 + 1]); f.flush(); time.sleep(0.3)
PY
echo "Downloaded data.zip"
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_download_and_unzip_show_progress_and_quiet_shows_none(tmp_path):
    pairs = make_pairs(tmp_path / "src" / "train", count=3)
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in sorted(pairs.rglob("*.png")):
            zf.write(path, arcname=str(path.relative_to(tmp_path / "src")))
        zf.writestr("test/lr/t.png", (pairs / "lr" / "img_000.png").read_bytes())
    fake_kaggle(tmp_path / "bin", archive)
    env = {**FAST, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}
    done = run_script("download.py", "--competition", "c", "--out", tmp_path / "d", work=tmp_path, env_extra=env)
    lines = done.stderr.splitlines()
    downloading = [line for line in lines if line.startswith("download: ")]
    assert downloading and all("%" in line and "/s" in line and "left" in line for line in downloading), lines
    assert any(line.startswith("unzip data.zip: ") for line in lines)
    assert "train pairs:" in done.stdout and "(3 lr, 3 hr)" in done.stdout
    quiet = run_script("download.py", "--competition", "c", "--out", tmp_path / "q", "--quiet", work=tmp_path,
                       env_extra=env)
    assert quiet.stderr == "" and "train pairs:" in quiet.stdout


def test_predict_and_csv_progress_lines_and_quiet(learned, tmp_path):
    work, run, test = learned
    done = run_script("predict.py", "--weights", run, "--input", test / "lr", "--output", tmp_path / "p",
                      "--batch-size", "1", work=work, env_extra=FAST)
    assert sum(line.startswith("predict: ") and "img/s" in line for line in done.stderr.splitlines()) == 4
    done = run_script("make_submission.py", "--input", tmp_path / "p", "--lr-dir", test / "lr", "--sample", "none",
                      "--output", tmp_path / "s.csv", work=work, env_extra=FAST)
    assert any(line.startswith("CSV: 4/4 row (100%)") for line in done.stderr.splitlines()), done.stderr
    for script, args in (("predict.py", ["--weights", run, "--input", test / "lr", "--output", tmp_path / "q",
                                         "--quiet"]),
                         ("make_submission.py", ["--input", tmp_path / "q", "--lr-dir", test / "lr", "--sample",
                                                 "none", "--output", tmp_path / "q.csv", "--quiet"])):
        quiet = run_script(script, *args, work=work, env_extra=FAST)
        assert quiet.stderr == "", (script, quiet.stderr)
