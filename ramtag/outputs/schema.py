"""The one Arrow schema every output shares, and records turned into Arrow batches.

Columns, in order: ``path``, ``tags``, ``scores``, [``tags_zh``], ``width``, ``height``, ``error``,
[``all_scores``]. ``tags`` is always English, so a query or script written against one run works
against any other; ``--lang zh|both`` adds ``tags_zh`` (aligned with ``tags``) rather than
replacing it. A failed image has ``error`` set, empty tag lists and null sizes and scores.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from ..pipeline import ImageRecord
    from ..tagger import Tagger

# Parquet key-value metadata key holding the run's provenance (``Tagger.metadata()`` as JSON).
METADATA_KEY = "ramtag"
LANGS = ("en", "zh", "both")


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
    ]
    if layout.all_scores:
        fields.append(pa.field("all_scores", pa.list_(pa.float32(), layout.num_tags)))
    schema = pa.schema(fields)
    if metadata is not None:
        schema = schema.with_metadata({METADATA_KEY: json.dumps(metadata, ensure_ascii=False)})
    return schema


def schema_for(
    tagger: Tagger, lang: str, all_scores: bool, top_k: int | None, draft_decode: bool = False
) -> pa.Schema:
    """The schema of a run's output: one function, so every engine writes exactly the same.

    Draft decoding changes the scores a little, so it is part of the settings a resumed run must
    share; it is recorded only when used, which keeps earlier outputs resumable.
    """
    layout = Layout.for_lang(lang, len(tagger.vocabulary), all_scores=all_scores)
    extra = {"draft_decode": True} if draft_decode else {}
    return output_schema(layout, {**tagger.metadata(), "top_k": top_k, **extra})


def read_metadata(schema: pa.Schema) -> dict[str, Any] | None:
    """The provenance stored with an output, or ``None`` when it has none."""
    raw = (schema.metadata or {}).get(METADATA_KEY.encode())
    return json.loads(raw) if raw is not None else None


def to_record_batch(records: Sequence[ImageRecord], schema: pa.Schema) -> pa.RecordBatch:
    """One Arrow batch with ``schema``'s columns, rows in the order of ``records``."""
    ok = [r.result is not None for r in records]
    columns: dict[str, pa.Array] = {
        "path": pa.array([r.key for r in records], pa.string()),
        "tags": pa.array([r.result.tags if r.result else [] for r in records], pa.list_(pa.string())),
        "scores": pa.array(
            [r.result.scores if r.result else [] for r in records], pa.list_(pa.float32())
        ),
        "width": pa.array([r.width for r in records], pa.int32()),
        "height": pa.array([r.height for r in records], pa.int32()),
        "error": pa.array([r.error for r in records], pa.string()),
    }
    if "tags_zh" in schema.names:
        columns["tags_zh"] = pa.array(
            [(r.result.tags_zh or []) if r.result else [] for r in records], pa.list_(pa.string())
        )
    if "all_scores" in schema.names:
        size = schema.field("all_scores").type.list_size
        values = np.zeros((len(records), size), dtype=np.float32)
        for row, record in enumerate(records):
            if record.result is not None:
                values[row] = record.result.all_scores
        columns["all_scores"] = pa.FixedSizeListArray.from_arrays(
            pa.array(values.reshape(-1)), size, mask=pa.array([not good for good in ok])
        )
    return pa.RecordBatch.from_arrays([columns[name] for name in schema.names], schema=schema)
