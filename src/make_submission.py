"""Write the submission CSV from predicted PNGs, in the competition's format:
`id,Encoded_Image` of base64 PNGs (GNR638), or `id,filename,rle` of run-length +
zlib + base64 cells (SRGB, "Super Resolution in Video Games"; srx4/submit/rle.py).

In:  --input the PNG folder from predict.py (default: the one predict.py wrote last,
     recorded in submissions/last_prediction.json),
     --lr-dir the test LR folder to check against (default: as predict.py),
     --sample the competition's sample submission (default: found under the Kaggle
     input or data/): the format (its header and the form of a cell), ids, order and
     count come from it, and ids with no test image are refused, naming a few, before
     anything is written; --format png|rle without a sample.
Out: --output CSV (default submissions/submission.csv), streamed to a temp file
     and renamed only once every row is valid; --zip also writes CSV.zip; a row
     in submissions/log.csv naming the CSV, its sha256 and the run whose weights
     made the PNGs (submit.py and inspect_run.py read it).

    python src/make_submission.py
    python src/make_submission.py --input submissions/srresnet_a/png --sample data/sample_submission.csv
    python src/make_submission.py --format rle --sample none     # SRGB's format without its sample

Stops with the name of the first missing or wrong image unless --allow-missing.
"""
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from srx4.core import layout
from srx4.core import paths
from srx4.submit import submission_log
from srx4.core.io import file_sha256
from srx4.submit.submission_log import weights_of
from srx4.core.errors import MissingData
from srx4.core.cli import option, parse_config, run_main
from srx4.submit.submission import SubmissionError, write_submission


@dataclass
class SubmissionConfig:
    input: str = option("", "folder of predicted PNGs (default: the one predict.py wrote last)")
    output: str = option("", "CSV to write (default: submissions/submission.csv)")
    lr_dir: str = option("", "test LR folder the rows are checked against (default: as predict.py)")
    sample: str = option("", "sample submission CSV: take ids, order and count from it (default: found in the "
                             "Kaggle input or data/; 'none' = ids are the test file names)")
    scale: int = option(4, "upscaling factor every image must have")
    format: str = option("auto", "png (id,Encoded_Image) or rle (id,filename,rle); auto = the sample "
                                 "submission's, else png", choices=["auto", "png", "rle"])
    allow_missing: bool = option(False, "write the rows that are valid and list the rest")
    zip: bool = option(False, "also write a .zip of the CSV for upload")
    workers: int = option(0, "threads reading and checking PNGs (0 = all cores)")
    quiet: bool = option(False, "no progress bars or progress lines")


def main(argv=None):
    config = parse_config(SubmissionConfig, "Write the submission CSV from predicted PNGs.", argv)
    recorded = None if config.input else paths.last_prediction()
    png_dir = Path(config.input) if config.input else (recorded[0] if recorded else None)
    if png_dir is None or not png_dir.is_dir():
        raise MissingData(f"{png_dir or paths.submissions_dir() / layout.LAST_PREDICTION}: no predicted PNGs; run "
                          f"python src/predict.py first, or pass --input")
    print(f"reading PNGs from {png_dir}" + (f" (predicted last, with {recorded[1]})" if recorded else ""))
    sample = None if config.sample == "none" else (config.sample or paths.find_sample_submission())
    if sample:
        print(f"ids, order and count from {sample}")
    recorded_lr = submission_log.lr_dir_of(png_dir)          # the folder predict.py read for these PNGs
    lr_dir = Path(config.lr_dir) if config.lr_dir else (recorded_lr or paths.default_test_dir())
    if not lr_dir.is_dir():
        raise MissingData(f"{lr_dir}: the test LR folder the PNGs are checked against is not there; pass --lr-dir "
                          f"with the folder predict.py read")
    print(f"checking the PNGs against the LR images in {lr_dir}"
          + (" (the folder predict.py read)" if not config.lr_dir and recorded_lr else ""))
    out_csv = Path(config.output) if config.output else paths.submission_csv()
    started = time.time()
    try:
        rows, missing = write_submission(png_dir, lr_dir, out_csv, config.scale, sample,
                                         config.allow_missing, config.workers or None, config.format,
                                         quiet=config.quiet)
    except (SubmissionError, FileNotFoundError) as err:
        raise SubmissionError(f"{err} (nothing written; --allow-missing writes the valid rows)") from None
    size_mb = out_csv.stat().st_size / 1e6
    with open(out_csv) as f:
        header = f.readline().strip()
    print(f"wrote {out_csv} ({header}): {rows} rows, {size_mb:.1f} MB, in {time.time() - started:.1f}s")
    made_by = weights_of(png_dir)
    submission_log.append_entry(event="csv", csv=out_csv.resolve(), sha256=file_sha256(out_csv),
                                rows=rows, png_dir=png_dir.resolve(), **made_by)
    print(f"recorded in {submission_log.log_path()}: made by run {made_by.get('run') or '(unknown weights)'}")
    for problem in missing:
        print(f"left out: {problem}", file=sys.stderr)
    if config.zip:
        zip_path = out_csv.with_name(out_csv.name + ".zip")
        tmp = zip_path.with_name("." + zip_path.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.write(out_csv, arcname=out_csv.name)
        tmp.replace(zip_path)
        print(f"wrote {zip_path}: {zip_path.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
