"""The one Arrow schema every output shares, and records turned into Arrow batches.

Columns, in order: ``path``, ``tags``, ``scores``, [``tags_zh``], ``width``, ``height``, ``error``,
``file_size``, ``file_modified``, ``file_sha256``, ``root``, [``all_scores``]. ``tags`` is always English, so a
query or script written against one run works against any other; ``--lang zh|both`` adds ``tags_zh``
(aligned with ``tags``) rather than replacing it. A failed image has ``error`` set, empty tag lists
and null sizes and scores. The ``file_`` columns say which version of the file the row is of (its
size, modification time and, with ``--content-hash``, SHA-256; ``inputs.identity``): a re-run tags a
file again when they no longer match. ``root`` is the folder input the file was found in (an index
into the ``roots`` of the metadata; null for files named directly or listed, tar members, URLs): only
such rows are ever pruned. Outputs of versions before these columns read as if they were null.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..engine.job import RESULT_DEFAULTS, RESULT_SETTINGS, ResultOptions
from ..inputs.identity import Stamp
from ..inputs.roots import KEY_SCHEME, Root, roots_from_metadata
from ..model.labels import LANGS
from ..text import json_text, printable
from . import columns as arrow
from .formats import METADATA_KEY

if TYPE_CHECKING:
    from ..pipeline import ImageRecord
    from ..tagger import Tagger

IDENTITY_FIELDS = (
    pa.field("file_size", pa.int64()),
    pa.field("file_modified", pa.timestamp("us", tz="UTC")),
    pa.field("file_sha256", pa.string()),
    pa.field("root", pa.int32()),
)
IDENTITY_COLUMNS = tuple(f.name for f in IDENTITY_FIELDS)


@dataclass(frozen=True)
class Layout:
    """Which optional columns an output has; ``num_tags`` sizes ``all_scores``."""

    num_tags: int
    chinese: bool = False
    all_scores: bool = False

    @classmethod
    def for_lang(cls, lang: str, num_tags: int, *, all_scores: bool = False) -> Layout:
        if lang not in LANGS:
            raise ValueError(f"lang must be one of {LANGS}, not {lang!r}")
        return cls(num_tags, chinese=lang != "en", all_scores=all_scores)


def output_schema(layout: Layout, metadata: dict[str, Any] | None = None) -> pa.Schema:
    fields = [
        pa.field("path", pa.string(), nullable=False),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("scores", pa.list_(pa.float32())),
    ]
    if layout.chinese:
        fields.append(pa.field("tags_zh", pa.list_(pa.string())))
    fields += [
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("error", pa.string()),
        *IDENTITY_FIELDS,
    ]
    if layout.all_scores:
        fields.append(pa.field("all_scores", pa.list_(pa.float32(), layout.num_tags)))
    schema = pa.schema(fields, metadata={b"pandas": _PANDAS})
    if metadata is not None:
        schema = schema.with_metadata({**schema.metadata, METADATA_KEY.encode(): json_text(metadata)})
    return schema


# pandas reads an integer column with nulls as float64 unless told its dtype: width and height are
# nullable integers (Int32), null on error rows. pandas' own metadata key says so to read_parquet.
_PANDAS = json.dumps({
    "index_columns": [], "column_indexes": [],
    "columns": [{"name": name, "field_name": name, "pandas_type": "int32", "numpy_type": "Int32", "metadata": None}
                for name in ("width", "height")],
}).encode()


def schema_for(
    tagger: Tagger, lang: str, all_scores: bool, results: ResultOptions | None = None,
    roots: Sequence[Root] | None = None,
) -> pa.Schema:
    """The schema of a run's output: one function, so every engine writes exactly the same.

    Its metadata is the tagger's provenance plus the job's result options (``ResultOptions``; those
    added after the first release only when set, so older outputs still match), and the folders
    the keys are relative to (``roots``, ``inputs.roots``), which a later run keys the same way.
    """
    layout = Layout.for_lang(lang, len(tagger.vocabulary), all_scores=all_scores)
    chosen = results if results is not None else ResultOptions()
    recorded = {
        option.name: getattr(chosen, option.name) for option in fields(ResultOptions)
        if option.metadata.get("always_recorded") or getattr(chosen, option.name) != option.default
    }
    keys = {} if roots is None else {"key_scheme": KEY_SCHEME, "roots": [root.to_data() for root in roots]}
    return output_schema(layout, {**tagger.metadata(), **recorded, **keys})


def roots_in(sources: Iterable[Path]) -> list[Root]:
    """The folder inputs recorded by the first of ``sources`` (Parquet files) that can be read."""
    import pyarrow.parquet as pq

    for source in sources:
        try:
            return roots_from_metadata(read_metadata(pq.read_schema(source)))
        except (OSError, pa.ArrowException, ValueError):
            continue
    return []


def with_metadata(schema: pa.Schema, **updates: Any) -> pa.Schema:
    """``schema`` with ``updates`` in ramtag's metadata (what a run learns as it goes: shard versions)."""
    metadata = {**(read_metadata(schema) or {}), **updates}
    return schema.with_metadata({**(schema.metadata or {}), METADATA_KEY.encode(): json_text(metadata)})


def read_metadata(schema: pa.Schema) -> dict[str, Any] | None:
    """The provenance stored with an output, or ``None`` when it has none."""
    raw = (schema.metadata or {}).get(METADATA_KEY.encode())
    return json.loads(raw) if raw is not None else None


def to_record_batch(
    records: Sequence[ImageRecord], schema: pa.Schema, roots: Sequence[int | None] | None = None
) -> pa.RecordBatch:
    """One Arrow batch with ``schema``'s columns, rows in the order of ``records`` (``roots``: each
    one's folder input, by index into the recorded roots)."""
    ok = [r.result is not None for r in records]
    columns: dict[str, pa.Array] = {
        "path": arrow.strings([r.key for r in records]),
        "tags": arrow.string_lists([r.result.tags if r.result else [] for r in records]),
        "scores": arrow.float_lists([r.result.scores if r.result else [] for r in records]),
        "width": arrow.integers([r.width for r in records], pa.int32()),
        "height": arrow.integers([r.height for r in records], pa.int32()),
        "error": arrow.strings([printable(r.error) if r.error else r.error for r in records]),
        "file_size": arrow.integers([r.stamp.size if r.stamp else None for r in records], pa.int64()),
        "file_modified": arrow.integers(
            [r.stamp.mtime_us if r.stamp else None for r in records], pa.timestamp("us", tz="UTC")
        ),
        "file_sha256": arrow.strings([r.stamp.sha256 if r.stamp else None for r in records]),
        "root": arrow.integers(roots if roots is not None else [None] * len(records), pa.int32()),
    }
    if "tags_zh" in schema.names:
        columns["tags_zh"] = arrow.string_lists([(r.result.tags_zh or []) if r.result else [] for r in records])
    if "all_scores" in schema.names:
        size = schema.field("all_scores").type.list_size
        values = np.zeros((len(records), size), dtype=np.float32)
        for row, record in enumerate(records):
            if record.result is not None:
                values[row] = record.result.all_scores
        columns["all_scores"] = arrow.float_rows(values, ok)
    return pa.RecordBatch.from_arrays([columns[name] for name in schema.names], schema=schema)


def settings_of(schema: pa.Schema) -> dict[str, Any]:
    """The settings an output's rows depend on (``RESULT_SETTINGS``, defaults where not recorded)
    and its columns: what two runs must share to write into one output."""
    metadata = read_metadata(schema) or {}
    settings = {key: metadata.get(key, RESULT_DEFAULTS.get(key)) for key in RESULT_SETTINGS}
    settings["columns"] = [name for name in schema.names if name not in IDENTITY_COLUMNS]  # added later
    return settings


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Rows of an earlier output in ``schema``: columns it did not have yet (``file_size``...) null."""
    if batch.schema.names == schema.names:
        return batch
    columns = [
        batch.column(name) if name in batch.schema.names else pa.nulls(batch.num_rows, schema.field(name).type)
        for name in schema.names
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def stamps_of(batch: pa.RecordBatch) -> list[Stamp | None]:
    """The ``file_`` columns of rows read back, as stamps (``None`` for rows that have none)."""
    names = batch.schema.names
    size = batch.column("file_size").to_pylist() if "file_size" in names else [None] * batch.num_rows
    if "file_modified" in names:
        mtime = batch.column("file_modified").cast(pa.int64()).to_pylist()
    else:
        mtime = [None] * batch.num_rows
    sha = batch.column("file_sha256").to_pylist() if "file_sha256" in names else [None] * batch.num_rows
    return [Stamp(s, m, h) if (s is not None or h is not None) else None for s, m, h in zip(size, mtime, sha)]


def differences(found: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Each differing setting in words: what the existing results used, what this run would use."""
    def value(settings: dict[str, Any], key: str) -> Any:
        found = settings.get(key)  # a result option absent or null in older files: its default
        if key == "bf16_recipe":
            return recipe_of(settings)
        return RESULT_DEFAULTS.get(key) if found is None else found

    def hint(key: str) -> str:  # the one setting whose option is worth naming: auto may resolve otherwise here
        if key == "bf16_recipe":  # no option chooses it: another version of ramtag did
            return "; another version of ramtag made those"
        return f"; --precision {value(found, key)} matches it" if key == "precision" else ""

    def shown(settings: dict[str, Any], key: str) -> str:
        if key == "columns" and isinstance(found.get(key), list) and isinstance(wanted.get(key), list):
            other = wanted if settings is found else found  # each side said by what the other lacks
            extra = [name for name in settings[key] if name not in other[key]]
            return ", ".join(extra) if extra else "none of the others"
        if key == "previous_output":  # whether the rows of an existing --out file are kept (no --overwrite)
            return "yes" if value(settings, key) else "no, --overwrite"
        if key == "bf16_recipe":
            return str(value(settings, key))  # whole: its parts are the point
        return _brief(value(settings, key))

    return [
        f"{_WORDS.get(key, key)} ({shown(found, key)} there, {shown(wanted, key)} now{hint(key)})"
        for key in (*RESULT_SETTINGS, "columns", "previous_output")
        if value(found, key) != value(wanted, key) and not (key == "bf16_recipe" and None in (
            value(found, key), value(wanted, key)))  # one side not bf16-mixed: the precision says it
    ]


def recipe_of(settings: dict[str, Any]) -> str | None:
    """The blocks that computed in bf16 for results made with ``settings`` (None: no bf16-mixed)."""
    from ..precision import FIRST_BF16_RECIPE

    if settings.get("precision") != "bf16-mixed":
        return None
    return settings.get("bf16_recipe") or FIRST_BF16_RECIPE  # not recorded: made before it was


_WORDS = {  # settings without an option of that name, or named otherwise there
    "previous_output": "keeps the existing output's rows",
    "bf16_recipe": "the blocks bf16-mixed computes in bf16",
    "model_kind": "--model", "checkpoint_sha256": "--checkpoint (its sha256)", "vocabulary": "the tags scored (--tag-list, --only-tags)",
    "thresholds": "thresholds", "input_size": "input size", "top_k": "--top-k",
}


def _brief(value: Any) -> str:
    if value is None:  # an option left at its default of none (top_k: every tag over its threshold)
        return "not set"
    if isinstance(value, list) and len(value) > 8:
        return f"{len(value)} values starting {', '.join(map(str, value[:3]))}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, str) and len(value) > 16:  # a sha256
        return value[:12] + "…"
    return str(value)
