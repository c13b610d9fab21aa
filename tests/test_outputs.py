"""The shared schema and its writers: Parquet row groups, CSV and JSON Lines round trips, atomicity."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ramtag.errors import OutputError, UsageError
from ramtag.groundtruth import parse_ground_truth
from ramtag.text import from_spreadsheet_cell, spreadsheet_cell
from ramtag.outputs import (
    METADATA_KEY,
    Layout,
    format_for,
    OutputFile,
    output_schema,
    read_metadata,
    text_sink,
    to_record_batch,
)
from ramtag.outputs import formats as tabular
from ramtag.outputs.file import ResumableOutput
from ramtag.outputs.journal import Journal
from ramtag.outputs.schema import differences
from ramtag.pipeline import ImageRecord
from ramtag.tagger import TagResult

AWKWARD = [
    "plain.jpg",
    "with, comma.jpg",
    'with "quotes".jpg',
    "with\nnewline.jpg",
    "with\r\ncrlf.jpg",
    "日本語/写真 é.jpg",
    " leading and trailing space .jpg",
    "pipe|in name.jpg",
]


def _record(key: str, n: int = 4, *, error: str | None = None, seed: int = 0) -> ImageRecord:
    if error is not None:
        return ImageRecord(key, None, None, None, error)
    scores = np.random.default_rng(seed).random(n, dtype=np.float32)
    order = np.argsort(-scores)[:2]
    result = TagResult(
        tags=[f"t{i}" for i in order],
        scores=[float(scores[i]) for i in order],
        tags_zh=[f"标{i}" for i in order],
        all_scores=scores,
    )
    return ImageRecord(key, result, 10 + seed, 20 + seed, None)


def _records(keys: list[str]) -> list[ImageRecord]:
    return [
        _record(key, error="empty file (0 bytes)") if i % 3 == 2 else _record(key, seed=i)
        for i, key in enumerate(keys)
    ]


def test_schema_columns_follow_the_layout() -> None:
    plain = output_schema(Layout(4))
    files = ["file_size", "file_modified", "file_sha256", "root"]  # which file, which version of it
    assert plain.names == ["path", "tags", "scores", "width", "height", "error", *files]
    full = output_schema(Layout.for_lang("both", 4, all_scores=True), {"model_kind": "ram_plus"})
    assert full.names == ["path", "tags", "scores", "tags_zh", "width", "height", "error", *files, "all_scores"]
    assert full.field("all_scores").type == pa.list_(pa.float32(), 4)
    assert full.field("scores").type == pa.list_(pa.float32())
    assert full.field("width").type == pa.int32()
    assert read_metadata(full) == {"model_kind": "ram_plus"}
    assert read_metadata(plain) is None
    assert Layout.for_lang("zh", 4).chinese and not Layout.for_lang("en", 4).chinese


def test_record_batch_keeps_order_and_marks_failures() -> None:
    schema = output_schema(Layout.for_lang("both", 4, all_scores=True))
    records = _records(["a", "b", "c", "d"])
    batch = to_record_batch(records, schema)
    rows = batch.to_pylist()
    assert [row["path"] for row in rows] == ["a", "b", "c", "d"]
    bad = rows[2]
    assert bad["error"] == "empty file (0 bytes)"
    assert bad["tags"] == [] and bad["scores"] == [] and bad["tags_zh"] == []
    assert bad["width"] is None and bad["all_scores"] is None
    good = rows[1]
    assert good["error"] is None and good["width"] == 11 and good["height"] == 21
    np.testing.assert_array_equal(np.float32(good["all_scores"]), records[1].result.all_scores)
    assert good["tags_zh"] == records[1].result.tags_zh


def test_columns_are_the_arrays_pyarrow_builds_from_lists() -> None:
    # outputs/columns.py builds them from buffers (pa.array imports pandas): the same arrays, checked
    from ramtag.outputs import columns as arrow

    names = [*AWKWARD, None, "", "\x00 nul"]
    zoned = pa.timestamp("us", tz="UTC")
    rows = np.random.default_rng(1).random((5, 3), dtype=np.float32)
    built_and_wanted = [
        (arrow.strings(names), pa.array(names, pa.string())),
        (arrow.strings([None, None]), pa.array([None, None], pa.string())),
        (arrow.strings([]), pa.array([], pa.string())),
        (arrow.string_lists([["a", "日本"], [], [""], AWKWARD]), pa.array([["a", "日本"], [], [""], AWKWARD], pa.list_(pa.string()))),
        (arrow.string_lists([]), pa.array([], pa.list_(pa.string()))),
        (arrow.float_lists([[0.1, 1e-30], [], [3.5]]), pa.array([[0.1, 1e-30], [], [3.5]], pa.list_(pa.float32()))),
        (arrow.integers([1, None, -(2**31), 2**31 - 1] * 3, pa.int32()), pa.array([1, None, -(2**31), 2**31 - 1] * 3, pa.int32())),
        (arrow.integers([None] * 17, pa.int64()), pa.array([None] * 17, pa.int64())),
        (arrow.integers([2**40, None], zoned), pa.array([2**40, None], pa.int64()).cast(zoned)),
        (arrow.booleans([True, False, False] * 7), pa.array([True, False, False] * 7, pa.bool_())),
        (arrow.float_rows(rows, [True, False, True, True, False]),
         pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), 3, mask=pa.array([False, True, False, False, True]))),
        (arrow.float_rows(rows, [True] * 5), pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), 3)),
    ]
    for built, wanted in built_and_wanted:
        built.validate(full=True)
        assert built.type == wanted.type and built.null_count == wanted.null_count
        assert built.equals(wanted), (built, wanted)


def test_text_outputs_write_times_as_pyarrow_reads_them() -> None:
    from ramtag.inputs.identity import Stamp

    schema = output_schema(Layout(4))
    records = _records(["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    moments = [1_700_000_000_123_456, None, 0, -1]  # microseconds: a date, none, the epoch, before it
    records = [
        ImageRecord(r.key, r.result, r.width, r.height, r.error, stamp=Stamp(10, us, None) if us is not None else None)
        for r, us in zip(records, moments)
    ]
    batch = to_record_batch(records, schema)
    assert batch.column("file_modified").cast(pa.int64()).to_pylist() == moments
    assert tabular.python_rows(batch) == batch.to_pylist()  # datetimes in UTC, None where none


def test_parquet_is_written_in_bounded_row_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tabular, "ROW_GROUP_ROWS", 10)
    schema = output_schema(Layout(4), {"vocabulary": ["a"]})
    dest = tmp_path / "out.parquet"
    out = OutputFile(dest, "parquet", schema)
    for start in range(0, 35, 5):
        out.write(to_record_batch(_records([f"{i:03}" for i in range(start, start + 5)]), schema))
    out.commit()
    meta = pq.read_metadata(dest)
    assert meta.num_rows == 35
    assert meta.num_row_groups == 4  # 10 + 10 + 10 + 5
    assert json.loads(meta.metadata[METADATA_KEY.encode()]) == {"vocabulary": ["a"]}
    table = pq.read_table(dest)
    assert table.schema.remove_metadata() == schema.remove_metadata()
    assert table.column("path").to_pylist() == [f"{i:03}" for i in range(35)]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_output_appears_only_when_complete(tmp_path: Path, fmt: str) -> None:
    schema = output_schema(Layout(4))
    dest = tmp_path / f"out.{fmt}"
    dest.write_text("previous version\n")
    out = OutputFile(dest, fmt, schema)
    out.write(to_record_batch(_records(["a"]), schema))
    assert dest.read_text() == "previous version\n"
    out.discard()  # a crash or Ctrl-C in the middle
    assert dest.read_text() == "previous version\n"
    assert [p.name for p in tmp_path.iterdir()] == [dest.name]  # no temporary file left behind
    out = OutputFile(dest, fmt, schema)
    out.write(to_record_batch(_records(["a"]), schema))
    out.commit()
    assert dest.read_bytes() != b"previous version\n"
    assert [p.name for p in tmp_path.iterdir()] == [dest.name]


def test_unwritable_output_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot write here"):
        OutputFile(tmp_path / "missing" / "out.parquet", "parquet", output_schema(Layout(4)))


def test_csv_round_trips_awkward_paths_through_pandas(tmp_path: Path) -> None:
    schema = output_schema(Layout.for_lang("both", 4, all_scores=True))
    records = _records(AWKWARD)
    dest = tmp_path / "out.csv"
    out = OutputFile(dest, "csv", schema)
    out.write(to_record_batch(records[:3], schema))
    out.write(to_record_batch(records[3:], schema))
    out.commit()
    frame = pd.read_csv(dest)
    assert list(frame.columns) == schema.names
    assert frame["path"].tolist() == AWKWARD
    for record, (_, row) in zip(records, frame.iterrows()):
        if record.error is not None:
            assert row["error"] == record.error
            assert pd.isna(row["tags"]) and pd.isna(row["width"])
            continue
        assert pd.isna(row["error"])
        assert row["tags"].split("|") == record.result.tags
        assert row["tags_zh"].split("|") == record.result.tags_zh
        # Shortest float32 text: reads back to exactly the same float32.
        assert np.float32(row["scores"].split("|")).tolist() == np.float32(record.result.scores).tolist()
        np.testing.assert_array_equal(np.float32(row["all_scores"].split("|")), record.result.all_scores)
        assert (row["width"], row["height"]) == (record.width, record.height)


FORMULA_LIKE = ['=HYPERLINK("http://example.com","x").jpg', "+1.jpg", "-a.jpg", "@eaDir/b.jpg", "\t=c.jpg", "'=d.jpg"]


def test_csv_cells_never_start_a_spreadsheet_formula(tmp_path: Path) -> None:
    schema = output_schema(Layout(4))
    records = [_record(key, seed=i) for i, key in enumerate(FORMULA_LIKE + ["plain.jpg", "'quoted.jpg"])]
    records.append(ImageRecord("tags.jpg", TagResult(["-minus", "plus"], [0.5, 0.25], None, None), 1, 2, None))
    records.append(ImageRecord("bad.jpg", None, None, None, "=cmd|' /C calc'!A0"))
    dest = tmp_path / "out.csv"
    out = OutputFile(dest, "csv", schema)
    out.write(to_record_batch(records, schema))
    out.commit()
    rows = list(csv.DictReader(dest.open(newline="")))
    for row in rows:
        for name, cell in row.items():
            assert not re.match(r"[=+\-@\t\r]", cell), (name, cell)  # no cell a spreadsheet would run
    paths = [row["path"] for row in rows]
    assert paths[: len(FORMULA_LIKE)] == ["'" + key for key in FORMULA_LIKE]
    assert paths[len(FORMULA_LIKE):] == ["plain.jpg", "'quoted.jpg", "tags.jpg", "bad.jpg"]  # nothing else changed
    assert rows[-2]["tags"] == "'-minus|plus" and rows[-2]["scores"] == "0.5|0.25"
    assert rows[-1]["error"].startswith("'=cmd")
    # ramtag's own reader of such a file (eval's labels CSV) gets the original text back.
    truth = parse_ground_truth(dest.read_text(), dialect="csv")
    assert list(truth.images) == [record.key for record in records]
    assert [truth.classes[i] for i in truth.labels[-2]] == ["-minus", "plus"]


def test_spreadsheet_guard_is_undone_exactly() -> None:
    # Every text of up to 4 characters from the ones that matter: guarded, it starts no formula, and
    # the reader's side gives back exactly the text it was (a name that already starts with ' too).
    alphabet = "'=+-@\t\ra "
    for text in ("".join(chars) for n in range(5) for chars in itertools.product(alphabet, repeat=n)):
        guarded = spreadsheet_cell(text)
        assert not re.match(r"[=+\-@\t\r]", guarded)
        assert from_spreadsheet_cell(guarded) == text
        assert guarded == text or guarded == "'" + text


def test_json_lines_one_object_per_image() -> None:
    schema = output_schema(Layout.for_lang("zh", 4))
    stream = io.StringIO()
    sink = text_sink("jsonl", stream, schema)
    records = _records(["a\nb.jpg", "写真.jpg", "bad.jpg"])
    sink.write(to_record_batch(records, schema))
    sink.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    rows = [json.loads(line) for line in lines]
    assert [row["path"] for row in rows] == ["a\nb.jpg", "写真.jpg", "bad.jpg"]
    assert list(rows[0]) == schema.names
    assert rows[0]["scores"] == [float(str(np.float32(s))) for s in records[0].result.scores]
    assert rows[2]["error"] and rows[2]["tags"] == [] and rows[2]["width"] is None
    assert "写真" in stream.getvalue()  # not \u-escaped


def test_format_from_extension_or_flag() -> None:
    assert format_for(Path("a.parquet")) == "parquet"
    assert format_for(Path("a.PQ")) == "parquet"
    assert format_for(Path("a.csv")) == "csv"
    assert format_for(Path("a.jsonl")) == "jsonl"
    assert format_for(Path("a.txt"), "csv") == "csv"
    assert format_for(Path("a.parquet"), "parquet") == "parquet"
    with pytest.raises(UsageError, match=r"--out a\.parquet is named as Parquet but --format is csv; name it \.csv"):
        format_for(Path("a.parquet"), "csv")  # CSV in a .parquet file: the next run would refuse it
    with pytest.raises(UsageError, match="--format"):
        format_for(Path("a.txt"))
    with pytest.raises(UsageError, match="parquet"):
        text_sink("parquet", io.StringIO(), output_schema(Layout(4)))


# -- resumable output: the on-disk protocol, crash by crash ----------------------------------------

META = {"model_kind": "ram_plus", "checkpoint_sha256": "ab" * 32, "vocabulary": ["a", "b", "c", "d"],
        "thresholds": [0.5] * 4, "input_size": 384, "precision": "fp32", "top_k": None}


def _batch(keys: list[str], schema: pa.Schema) -> pa.RecordBatch:
    return to_record_batch(_records(keys), schema)


def _paths(path: Path) -> list[str]:
    return pq.read_table(path).column("path").to_pylist()


def _run_once(dest: Path, schema: pa.Schema, keys: list[str]) -> None:
    """A whole run onto ``dest`` (Parquet) that writes the rows of ``keys``."""
    with ResumableOutput(dest, "parquet", schema) as out:
        out.write(_batch(keys, schema))
        out.finish()


def test_parts_are_journaled_and_a_crash_loses_only_unsaved_rows(tmp_path: Path) -> None:
    schema = output_schema(Layout(4), META)
    dest = tmp_path / "tags.parquet"
    out = ResumableOutput(dest, "parquet", schema, save_every=3)
    out.write(_batch(["a", "b"], schema))
    assert out.parts == []  # not yet due
    out.write(_batch(["c", "d"], schema))
    out.write(_batch(["e"], schema))  # pending, then "kill -9": never saved
    assert Journal(tmp_path / "tags.parquet.parts" / "journal").read() == [{"part": "000001.parquet", "rows": 4}]
    out._lock_fd and os.close(out._lock_fd)  # the process dies: its lock goes with it
    # Debris a crash can leave: a half-written part and a torn journal line.
    folder = tmp_path / "tags.parquet.parts"
    (folder / "000002.parquet.tmp").write_bytes(b"PAR1 half")
    with open(folder / "journal", "a") as journal:
        journal.write("part 000002.par")
    assert not dest.exists()
    with ResumableOutput(dest, "parquet", schema, save_every=3) as again:
        assert again.done == {"a", "b", "c", "d"}
        assert sorted(p.name for p in folder.iterdir()) == ["000001.parquet", "journal", "lock", "settings.json"]
        again.write(_batch(["e"], schema))
        again.finish()
    assert _paths(dest) == ["a", "b", "c", "d", "e"]
    assert not folder.exists()
    assert read_metadata(pq.read_schema(dest)) == META


def test_the_images_saved_count_each_image_once(tmp_path: Path) -> None:
    """A row replaced later in the same unfinished run (a shard's error row, then its members'
    rows again) was counted twice: "201 images saved", then "204", then "201"."""
    schema = output_schema(Layout(4), META)
    dest = tmp_path / "tags.parquet"
    with ResumableOutput(dest, "parquet", schema, save_every=1) as out:
        out.write(_batch(["a", "b"], schema))
        out.write(_batch(["b", "c"], schema))  # b again
        assert out.saved_rows == 3
    with ResumableOutput(dest, "parquet", schema) as again:
        assert again.saved_rows == 3


def test_a_crash_around_the_final_rename_never_duplicates_rows(tmp_path: Path) -> None:
    schema = output_schema(Layout(4), META)
    dest = tmp_path / "tags.parquet"
    folder = tmp_path / "tags.parquet.parts"
    with ResumableOutput(dest, "parquet", schema, save_every=2) as out:
        out.write(_batch(["a", "b"], schema))
    saved = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "lock"}
    # Crash after the final file was renamed onto --out but before the folder was removed.
    with ResumableOutput(dest, "parquet", schema) as out:
        out.finish()
    folder.mkdir()
    for name, data in saved.items():
        (folder / name).write_bytes(data)
    with open(folder / "journal", "a") as journal:
        journal.write("finish final.tmp\n")
    with ResumableOutput(dest, "parquet", schema) as out:
        assert out.parts == [] and out.done == {"a", "b"}
        out.finish()
    assert _paths(dest) == ["a", "b"]
    # Crash before that rename: the final file is still in the folder; finishing again is right.
    dest.unlink()
    folder.mkdir()
    for name, data in saved.items():
        (folder / name).write_bytes(data)
    (folder / "final.tmp").write_bytes(b"incomplete")
    with open(folder / "journal", "a") as journal:
        journal.write("finish final.tmp\n")
    with ResumableOutput(dest, "parquet", schema) as out:
        assert [name for name, _ in out.parts] == ["000001.parquet"]
        out.finish()
    assert _paths(dest) == ["a", "b"]
    assert not folder.exists()


def test_an_interrupted_overwrite_says_how_to_keep_the_existing_output(tmp_path: Path) -> None:
    schema = output_schema(Layout(4), META)
    dest = tmp_path / "tags.parquet"
    _run_once(dest, schema, ["a"])
    with ResumableOutput(dest, "parquet", schema, overwrite=True, save_every=1) as out:
        out.write(_batch(["b"], schema))  # then Ctrl-C: parts saved, the old file still whole
    with pytest.raises(OutputError) as refused:
        ResumableOutput(dest, "parquet", schema)
    message = str(refused.value)
    assert "keeps the existing output's rows (no, --overwrite there, yes now)" in message
    assert "previous_output" not in message
    assert message.endswith(f"or delete {tmp_path / 'tags.parquet.parts'} to drop the unfinished run and keep "
                            "tags.parquet as it is")
    shutil.rmtree(tmp_path / "tags.parquet.parts")  # what it says
    _run_once(dest, schema, ["c"])
    assert sorted(_paths(dest)) == ["a", "c"]


def test_an_unfinished_run_with_other_settings_is_kept_unless_overwrite(tmp_path: Path) -> None:
    schema = output_schema(Layout(4), META)
    dest = tmp_path / "tags.csv"
    with ResumableOutput(dest, "csv", schema, save_every=1) as out:
        out.write(_batch(["a"], schema))
    other = output_schema(Layout(4), {**META, "thresholds": [0.7] * 4})
    with pytest.raises(OutputError, match=r"unfinished run with other settings: thresholds .*--overwrite"):
        ResumableOutput(dest, "csv", other)
    assert (tmp_path / "tags.csv.parts" / "000001.parquet").exists()  # refusing kept the work
    with ResumableOutput(dest, "csv", other, overwrite=True) as out:
        assert out.done == set() and out.parts == []
        out.write(_batch(["b"], other))
        out.finish()
    assert pd.read_csv(dest)["path"].tolist() == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["tags.csv"]


def test_differences_are_said_briefly() -> None:
    words = differences({**META, "columns": ["path"]}, {**META, "vocabulary": list("abcdefghij"), "columns": ["path"]})
    assert words == ["the tags scored (--tag-list, --only-tags) (a, b, c, d there, 10 values starting a, b, c now)"]
    words = differences({**META, "columns": ["path"]}, {**META, "top_k": 3, "columns": ["path"]})
    assert words == ["--top-k (not set there, 3 now)"]  # not Python's None, nor the setting's inner name
    words = differences({**META, "columns": ["path", "tags"]}, {**META, "columns": ["path", "tags", "all_scores"]})
    assert words == ["columns (none of the others there, all_scores now)"]  # what differs, not both lists


def test_a_read_only_output_is_replaced_and_keeps_its_mode(tmp_path: Path) -> None:
    schema = output_schema(Layout(4), META)
    dest = tmp_path / "tags.parquet"
    _run_once(dest, schema, ["a"])
    dest.chmod(0o444)  # someone protected the results: a re-run still adds to them
    _run_once(dest, schema, ["b"])
    assert _paths(dest) == ["a", "b"] and dest.stat().st_mode & 0o777 == 0o444


def test_a_failed_final_rename_is_finished_by_the_next_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ramtag.atomic

    schema = output_schema(Layout(4), META)
    dest = tmp_path / "tags.parquet"
    real = os.replace

    def refused(source, target):  # the rename onto --out fails (a full or read-only file system)
        if Path(target) == dest:
            raise PermissionError(13, "Permission denied")
        real(source, target)

    with ResumableOutput(dest, "parquet", schema, save_every=1) as out:
        out.write(_batch(["a", "b"], schema))
        monkeypatch.setattr(ramtag.atomic.os, "replace", refused)
        with pytest.raises(OutputError, match="cannot replace it"):
            out.finish()
    monkeypatch.setattr(ramtag.atomic.os, "replace", real)
    assert not dest.exists()
    with ResumableOutput(dest, "parquet", schema) as out:  # the saved rows are still there
        assert out.done == {"a", "b"}
        out.finish()
    assert _paths(dest) == ["a", "b"] and not (tmp_path / "tags.parquet.parts").exists()


def test_a_ray_part_says_which_folder_input_each_walked_file_came_from() -> None:
    from ramtag.inputs import ImageRef
    from ramtag.inputs.roots import Root
    from ramtag.outputs.dataset import PartOutput

    schema = output_schema(Layout(4))
    part = PartOutput(schema, [Root("/photos", "photos/"), Root("/photos/2024", "photos/2024/")])
    refs = [ImageRef(Path("/photos/a.jpg"), "photos/a.jpg", walked=True),
            ImageRef(Path("/photos/2024/b.jpg"), "photos/2024/b.jpg", walked=True),
            ImageRef(Path("/elsewhere/c.jpg"), "/elsewhere/c.jpg")]  # named on the command line
    assert all(part.needs(ref) for ref in refs)
    part.write_records(_records([ref.key for ref in refs]))
    part.finish()
    table = pq.read_table(pa.BufferReader(part.data))
    assert table.column("path").to_pylist() == [ref.key for ref in refs]
    assert table.column("root").to_pylist() == [0, 1, None]
