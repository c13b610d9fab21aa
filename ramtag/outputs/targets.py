"""The outputs a run writes to, from its options: the one place a new output kind is added.

``--out FILE`` is a resumable file; without it rows go to stdout; ``--xmp`` adds sidecars (alone, the
sidecars are the output and stdout stays quiet unless ``--format`` asks for rows there too).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from .base import Output, Tee
from .file import ResumableOutput
from .formats import format_for
from .schema import read_metadata
from .sidecars import SidecarWriter
from .stdout import StdoutOutput

if TYPE_CHECKING:
    import pyarrow as pa

    from ..engine.job import OutputOptions
    from .rerun import Rerun


def open_outputs(
    options: OutputOptions, schema: pa.Schema, *, warn: Callable[[Path, str], None] | None = None,
    rerun: Rerun | None = None,
) -> Tee:
    """Every output ``options`` names, opened (locks taken, earlier results read), as one ``Tee``.

    Sidecars come first, so a sidecar that cannot be written is an error row in the file.
    ``warn`` hears what a person should know about where things went (RAW+JPEG pairs); ``rerun``
    says what to do with the rows an existing ``--out`` holds (``outputs.rerun``).
    """
    parts: list[Output] = []
    with ExitStack() as opened:  # if one cannot be opened, those opened before it are closed
        metadata = read_metadata(schema) or {}
        if options.embed:
            from .embedded import EmbedWriter, can_embed
            from .sidecars import Provenance

            provenance = Provenance.from_metadata(metadata, parent=options.xmp_parent, lang=options.lang)
            parts.append(opened.enter_context(EmbedWriter(provenance, touch=options.touch, beside_sidecars=options.xmp)))
        if options.xmp or options.embed:
            # --embed alone: sidecars for what cannot hold keywords (proprietary raws, GIF, BMP)
            only = None if options.xmp else (lambda path: not can_embed(path))
            sidecars = SidecarWriter.for_run(
                metadata, parent=options.xmp_parent, lang=options.lang, naming=options.xmp_naming, warn=warn,
                only=only,
            )
            parts.append(opened.enter_context(sidecars))
        if options.out is not None:
            out = Path(options.out)
            out.parent.mkdir(parents=True, exist_ok=True)  # --out results/2024/tags.parquet
            file = ResumableOutput(
                out, format_for(out, options.format), schema,
                overwrite=options.overwrite, save_every=options.save_every, rerun=rerun,
            )
            parts.append(opened.enter_context(file))
        elif not (options.xmp or options.embed) or options.format is not None:
            quiet = options.xmp or options.embed
            parts.append(StdoutOutput(options.format, schema, options.lang, everything=not quiet))
        opened.pop_all()
    return Tee(parts)
