"""The submission CSV in-process (fast: mutation testing runs these): real PNGs, real
files, every refusal naming the id or file."""
import base64
import csv

import numpy as np
import pytest

from conftest import photo_crops
from srx4.image.codec import read_image, write_png
from srx4.image.resize import imresize
from srx4.submit.submission import (SubmissionError, csv_field, iter_rows, match_ids, read_sample_ids, validate_csv, write_submission)


@pytest.fixture
def lr_and_png(tmp_path):
    """lr/ (16x16 and one 12x20) and png/ (their x4 'predictions'), real photo crops."""
    crops = photo_crops(3, 64)
    crops[2] = crops[2][:48, :]                                   # one with another size
    for k, hr in enumerate(crops):
        write_png(tmp_path / "lr" / f"frame_{k}.png", imresize(hr, 1 / 4))
        write_png(tmp_path / "png" / f"frame_{k}.png", hr)
    return tmp_path


def write_rows(path, rows, header=("id", "Encoded_Image")):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def test_csv_round_trip_is_bit_exact_in_lr_order(lr_and_png):
    out = lr_and_png / "sub" / "submission.csv"
    rows, missing = write_submission(lr_and_png / "png", lr_and_png / "lr", out, workers=2)
    assert (rows, missing) == (3, [])
    decoded = list(iter_rows(out))
    assert [name for name, _, _ in decoded] == ["frame_0.png", "frame_1.png", "frame_2.png"]
    for name, _, img in decoded:
        assert np.array_equal(img, read_image(lr_and_png / "png" / name))
    with open(out, newline="") as f:
        raw = list(csv.reader(f))
    assert raw[0] == ["id", "Encoded_Image"]
    assert base64.b64decode(raw[1][1]) == (lr_and_png / "png" / "frame_0.png").read_bytes()
    assert validate_csv(out, lr_and_png / "lr") == 3
    assert [p.name for p in out.parent.iterdir()] == ["submission.csv"]           # no temp file left


def test_sample_ids_set_order_and_naming(lr_and_png):
    sample = write_rows(lr_and_png / "sample.csv", [("frame_2", "x"), ("frame_0.png", "x"), ("frame_1", "x")])
    assert read_sample_ids(sample) == ["frame_2", "frame_0.png", "frame_1"]
    out = lr_and_png / "s.csv"
    assert write_submission(lr_and_png / "png", lr_and_png / "lr", out, sample_csv=sample)[0] == 3
    assert [name for name, _, _ in iter_rows(out)] == ["frame_2", "frame_0.png", "frame_1"]
    assert validate_csv(out, lr_and_png / "lr", sample_csv=sample) == 3
    lr = sorted((lr_and_png / "lr").iterdir())
    assert match_ids(lr) == [(p.name, p.name, p) for p in lr]
    assert match_ids(lr, [("frame_1", None), ("nope", None)]) == [("frame_1", None, lr[1]), ("nope", None, None)]


def test_refusals_name_the_id_and_write_nothing(lr_and_png):
    out = lr_and_png / "s.csv"
    unknown = write_rows(lr_and_png / "sample.csv", [("frame_0", "x"), ("ghost_7", "x")])
    with pytest.raises(SubmissionError, match="ghost_7"):
        write_submission(lr_and_png / "png", lr_and_png / "lr", out, sample_csv=unknown)
    assert not out.exists()
    (lr_and_png / "png" / "frame_1.png").unlink()
    with pytest.raises(SubmissionError, match="missing prediction for frame_1.png"):
        write_submission(lr_and_png / "png", lr_and_png / "lr", out)
    assert not out.exists() and not list(lr_and_png.glob(".s.csv*"))
    rows, missing = write_submission(lr_and_png / "png", lr_and_png / "lr", out, allow_missing=True)
    assert rows == 2 and len(missing) == 1 and "frame_1" in missing[0]
    write_png(lr_and_png / "png" / "frame_1.png", photo_crops(2, 64)[1][:60])    # wrong size
    with pytest.raises(SubmissionError, match=r"frame_1.png: 64x60 is not 4 x 16x16"):
        write_submission(lr_and_png / "png", lr_and_png / "lr", lr_and_png / "t.csv")
    (lr_and_png / "empty").mkdir()
    with pytest.raises(SubmissionError, match="no test LR images"):
        write_submission(lr_and_png / "png", lr_and_png / "empty", out)
    with pytest.raises(SubmissionError, match="header"):
        read_sample_ids(write_rows(lr_and_png / "bad.csv", [("a", "b")], header=("name", "image")))


def test_validator_catches_every_kind_of_bad_row(lr_and_png):
    good = {k: base64.b64encode((lr_and_png / "png" / f"frame_{k}.png").read_bytes()).decode() for k in range(3)}
    lr = lr_and_png / "lr"
    cases = {
        "appears twice": [("frame_0.png", good[0]), ("frame_0.png", good[0])],
        "is not a test image": [("other.png", good[0])],
        "have no row, e.g. frame_2.png": [("frame_0.png", good[0]), ("frame_1.png", good[1])],
        r"id frame_2.png is 64x64, not 4 x 16x12": [("frame_0.png", good[0]), ("frame_2.png", good[1])],
        r"row 3 \(frame_1.png\): not base64": [("frame_0.png", good[0]), ("frame_1.png", "@@@")],
        "row 2 has 1 field": [("frame_0.png",)],
    }
    for message, rows in cases.items():
        with pytest.raises(SubmissionError, match=message):
            validate_csv(write_rows(lr_and_png / "v.csv", rows), lr)
    junk = base64.b64encode(b"not a png").decode()
    with pytest.raises(SubmissionError, match=r"row 2 \(frame_0.png\)"):
        validate_csv(write_rows(lr_and_png / "v.csv", [("frame_0.png", junk)]), lr)
    with pytest.raises(SubmissionError, match="header"):
        validate_csv(write_rows(lr_and_png / "v.csv", [], header=("id", "image")), lr)


def test_csv_field_quotes_only_when_needed():
    assert csv_field("frame_1.png") == b"frame_1.png"
    assert csv_field('a,"b"') == b'"a,""b"""'
    assert csv_field("line\nbreak") == b'"line\nbreak"'
    assert csv_field("é.png") == "é.png".encode()


def test_ids_by_stem_extra_columns_modes_and_messages(lr_and_png):
    lr = sorted((lr_and_png / "lr").iterdir())
    assert match_ids(lr, [("frame_0.jpg", None), ("frame_1.png", None), ("frame_2", None)]) == [
        ("frame_0.jpg", None, lr[0]), ("frame_1.png", None, lr[1]), ("frame_2", None, lr[2])]
    sample = write_rows(lr_and_png / "sample.csv", [("frame_0.jpg", "x", "1"), ("frame_1", "x", "2"), ("frame_2", "x", "3")],
                        header=("id", "Encoded_Image", "Usage"))             # extra columns are fine
    out = lr_and_png / "new" / "dir" / "s.csv"                                 # parents are made
    assert write_submission(lr_and_png / "png", lr_and_png / "lr", out, sample_csv=sample)[0] == 3
    assert out.stat().st_mode & 0o777 == 0o644
    assert [name for name, _, _ in iter_rows(out)] == ["frame_0.jpg", "frame_1", "frame_2"]
    strangers = write_rows(lr_and_png / "strangers.csv", [(f"ghost_{k}", "x") for k in range(7)] + [("frame_0", "x")])
    with pytest.raises(SubmissionError, match=r"7 of 8 ids match no test image .* e\.g\. ghost_0, ghost_1, ghost_2, "
                                              r"ghost_3, ghost_4$"):
        write_submission(lr_and_png / "png", lr_and_png / "lr", lr_and_png / "t.csv", sample_csv=strangers)
    rows, missing = write_submission(lr_and_png / "png", lr_and_png / "lr", lr_and_png / "t.csv", sample_csv=strangers,
                                     allow_missing=True)
    assert rows == 1 and missing[0] == "ghost_0: no test LR image for this id" and len(missing) == 7
    (lr_and_png / "png" / "frame_1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage IEND")
    with pytest.raises(SubmissionError, match=r"png/frame_1.png: truncated PNG"):
        write_submission(lr_and_png / "png", lr_and_png / "lr", lr_and_png / "u.csv")
    swapped = base64.b64encode((lr_and_png / "png" / "frame_2.png").read_bytes()).decode()
    with pytest.raises(SubmissionError, match=r"id frame_0.png is 64x48, not 4 x 16x16"):
        validate_csv(write_rows(lr_and_png / "v.csv", [("frame_0.png", swapped)]), lr_and_png / "lr")
    assert csv_field("X.png") == b"X.png"


def test_id_lookup_edge_cases_and_empty_files(lr_and_png):
    lr = lr_and_png / "lr"
    for name in ("a.jpg", "a.png", "shot.01.png"):
        write_png(lr / name, photo_crops(1, 16)[0])
    files = sorted(lr.iterdir())
    by = {i: lr for i, _, lr in match_ids(files, [(i, None) for i in ("a.jpg", "a.png", "shot.01", "shot.01.png")])}
    assert by["a.jpg"].name == "a.jpg" and by["a.png"].name == "a.png"       # the exact name wins over the stem
    assert by["shot.01"].name == by["shot.01.png"].name == "shot.01.png"    # an id that is a stem with a dot
    empty = lr_and_png / "empty.csv"
    empty.write_text("")
    known = r"header None is none of the known formats: id,Encoded_Image; id,filename,rle"
    with pytest.raises(SubmissionError, match=rf"empty.csv: {known}"):
        read_sample_ids(empty)
    with pytest.raises(SubmissionError, match=rf"empty.csv: {known}"):
        list(iter_rows(empty))
    good = base64.b64encode((lr_and_png / "png" / "frame_0.png").read_bytes()).decode()
    extra = write_rows(lr_and_png / "extra.csv", [("frame_0.png", good, "kept")], header=("id", "Encoded_Image", "x"))
    assert [name for name, _, _ in iter_rows(extra)] == ["frame_0.png"]
