"""A tagging job: every setting of a run, checked, as one frozen value that travels as JSON.

The command line parses its options into a ``Job``; the local engine runs it, the Ray engine ships it
to its actors as JSON, and ``eval --images`` and ``bench`` build theirs. ``check`` makes every test
that needs neither torch nor the weights (names, paths, combinations), so a typo costs milliseconds
instead of a model load, and the same kind of mistake always gets the same exit code.

``ResultOptions`` is what, beside the model and its vocabulary, changes the rows a run writes, and
``RESULT_SETTINGS`` lists every setting rows depend on: each output records them, and a run that
continues an output must share them. A new option that changes results is one more field of
``ResultOptions``; it is then recorded and compared without anything else to remember.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .. import precision as precisions
from ..devices import check_device
from ..errors import UsageError
from ..inputs.refs import MAX_PIXELS
from ..model.config import LANGS, MODEL_KINDS, PREPROCESSING, VOCAB_MODES
from ..text import json_text

ENGINES = ("local", "ray")
SIDECARS_NEED_FILES = "--xmp writes sidecars beside image files; tar shards and URLs have none"
EMBED_NEEDS_FILES = "--embed writes into image files; tar shards and URLs are not files"
NAMINGS = ("auto", "ext", "replace")  # XMP sidecar names: IMG_1.CR2.xmp (ext), IMG_1.xmp (replace)


@dataclass(frozen=True)
class InputOptions:
    """What to tag: paths, folders, tar shards, URLs and patterns, a list file, and filters."""

    paths: tuple[str, ...] = ()
    files_from: str | None = None  # a file with one path per line; "-": stdin
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    hidden: bool = False
    max_pixels: int | None = MAX_PIXELS

    def __post_init__(self) -> None:
        for name in ("paths", "include", "exclude"):  # one path or glob as a string is one, not its letters
            value = getattr(self, name)
            if isinstance(value, (str, os.PathLike)):
                object.__setattr__(self, name, (os.fspath(value),))
            elif not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(os.fspath(item) for item in value))


@dataclass(frozen=True)
class ModelOptions:
    """Which model, vocabulary, device and precision (the keyword arguments of ``load_tagger``)."""

    kind: str | None = None  # ram_plus or ram; None: the checkpoint's kind (RAM++ without one)
    checkpoint: str | None = None  # None: the released weights, downloaded at first use
    tag_list: str | None = None
    tag_list_zh: str | None = None
    thresholds: str | None = None
    threshold: float | None = None
    device: str = "auto"
    precision: str = "auto"
    tags: str | None = None  # open-set tags (descriptions file, embeddings, names)
    vocab: str = "open"  # open-set tags alone, or after the built-in ones ("both")
    text_encoder: str | None = None
    # Only these built-in tags are scored (``only_tag_names`` reads what --only-tags gives).
    only_tags: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.only_tags, str):  # names separated by commas, as --only-tags takes them
            object.__setattr__(self, "only_tags", tuple(name.strip() for name in self.only_tags.split(",") if name.strip()))
        elif self.only_tags is not None and not isinstance(self.only_tags, tuple):
            object.__setattr__(self, "only_tags", tuple(self.only_tags))


@dataclass(frozen=True)
class ResultOptions:
    """Options that change the rows themselves: every field is a result-changing setting."""

    top_k: int | None = field(default=None, metadata={"always_recorded": True})
    # Options added later are recorded only when set, so that outputs written before they existed
    # still match a run that leaves them at their default (absent means the default).
    draft_decode: bool = False  # JPEGs decoded at reduced scale: slightly different pixels
    # Camera raws: their embedded preview when large enough ("auto"), or always LibRaw's demosaic.
    raw_decode: str = field(default="auto", metadata={"always_recorded": True})
    # Where JPEGs are decoded and resized: by Pillow, or on the GPU (``model.config.PREPROCESSING``).
    preprocess: str = "pillow"
    ignore_orientation: bool = False  # pixels as stored, EXIF orientation ignored (the official code's reading)


# Settings rows depend on that come from the loaded model (``Tagger.metadata``), then the job's own.
MODEL_SETTINGS = (
    "model_kind", "checkpoint_sha256", "vocabulary", "thresholds", "input_size", "precision", "bf16_recipe",
)
RESULT_SETTINGS: tuple[str, ...] = (*MODEL_SETTINGS, *(f.name for f in fields(ResultOptions)))
RESULT_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(ResultOptions)}


@dataclass(frozen=True)
class OutputOptions:
    """Where rows go: a file (or stdout without one), XMP sidecars, and which columns."""

    out: str | None = None  # None: stdout (a table on a terminal, JSON Lines otherwise)
    format: str | None = None  # None: from the extension of ``out``
    overwrite: bool = False
    save_every: int = 1000
    lang: str = "en"  # zh, both: a tags_zh column (and Chinese keywords in sidecars)
    all_scores: bool = False
    xmp: bool = False
    xmp_naming: str = "auto"
    xmp_parent: str = "ramtag"
    embed: bool = False  # keywords written into the image files (proprietary raws get sidecars)
    touch: bool = False  # with embed: edited photos get the current modification time
    # A re-run onto an existing --out (``outputs.rerun``): error rows tagged again, rows of deleted
    # files removed, files compared by content hash as well as size and time.
    retry_errors: bool = True
    prune: bool = False
    content_hash: bool = False


@dataclass(frozen=True)
class ClusterOptions:
    """Where the work runs: this machine, or a Ray cluster and the shape of its actors."""

    engine: str = "local"
    address: str | None = None
    num_gpus_per_worker: float | None = None
    concurrency: int | None = None


@dataclass(frozen=True)
class Job:
    inputs: InputOptions = field(default_factory=InputOptions)
    model: ModelOptions = field(default_factory=ModelOptions)
    results: ResultOptions = field(default_factory=ResultOptions)
    outputs: OutputOptions = field(default_factory=OutputOptions)
    cluster: ClusterOptions = field(default_factory=ClusterOptions)
    batch_size: int | None = None  # None: the device's default
    workers: int | None = None  # decoding processes; None: the device's default
    # The folders keys are relative to, (real path, prefix), as the outputs record them
    # (``inputs.roots``): found by the driver of a Ray run, so that every part records the same.
    roots: tuple[tuple[str, str], ...] = ()

    def check(self) -> None:
        """Every mistake that can be found without torch or the weights, as a ``UsageError``."""
        _check_inputs(self.inputs)
        _check_model(self.model)
        _check_results(self.results)
        check_preprocess(self.results, self.model.device)
        _check_outputs(self, self.outputs)
        _check_cluster(self)
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if self.workers is not None and self.workers < 0:
            raise UsageError("--workers cannot be negative")

    def replace(self, **parts: Any) -> Job:
        return replace(self, **parts)

    def to_json(self) -> str:
        return json_text(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        data = json.loads(text)
        inputs = data["inputs"]
        for name in ("paths", "include", "exclude"):
            inputs[name] = tuple(inputs[name])
        model = data["model"]
        if model.get("only_tags") is not None:
            model["only_tags"] = tuple(model["only_tags"])
        return cls(
            inputs=InputOptions(**inputs), model=ModelOptions(**model),
            results=ResultOptions(**data["results"]), outputs=OutputOptions(**data["outputs"]),
            cluster=ClusterOptions(**data["cluster"]), batch_size=data["batch_size"], workers=data["workers"],
            roots=tuple(tuple(root) for root in data.get("roots", ())),  # type: ignore[misc]
        )


def check_model_options(device: str, precision: str, *files: tuple[str, str | os.PathLike[str] | None]) -> None:
    """What every command that loads the model checks first, before torch is imported: the device
    and precision names (and that they fit each other), and that the files named exist."""
    device = check_device(device)
    chosen = precisions.check(precision)
    if chosen != "auto" and device != "auto":
        precisions.resolve(chosen, device.split(":")[0])  # int8 on a GPU is refused now
    check_files(*files)


def check_files(*options: tuple[str, str | os.PathLike[str] | None]) -> None:
    """Each ``(option, path)`` given names an existing file: what every command checks first."""
    for option, value in options:
        if value is not None and not os.path.isfile(value):
            what = "a folder, not a file" if os.path.isdir(value) else "not found"
            raise UsageError(f"{option} {value}: {what}; check the path")


def _check_inputs(inputs: InputOptions) -> None:
    if not inputs.paths and inputs.files_from is None:
        raise UsageError("give folders or image files to tag, or --files-from LIST")
    if inputs.max_pixels is not None and inputs.max_pixels < 1:
        raise UsageError("--max-pixels must be at least 1")


def _check_results(results: ResultOptions) -> None:
    from ..inputs.refs import RAW_DECODES

    if results.raw_decode not in RAW_DECODES:
        raise UsageError(f"--raw-decode must be one of {', '.join(RAW_DECODES)}, not {results.raw_decode!r}")
    if results.top_k is not None and results.top_k < 1:
        raise UsageError("--top-k must be at least 1")


def check_preprocess(results: ResultOptions, device: str) -> None:
    """``--preprocess`` and what it goes with; the device only where one is named."""
    if results.preprocess not in PREPROCESSING:
        raise UsageError(
            f"--preprocess must be one of {', '.join(PREPROCESSING)}, not {results.preprocess!r}"
        )
    if results.preprocess != "gpu":
        return
    if results.draft_decode:
        raise UsageError("--draft-decode is Pillow's reduced-scale decoding; --preprocess gpu decodes JPEGs "
                         "at full size on the GPU: give one or the other")
    device = check_device(device)
    if device != "auto":
        check_preprocess_device(results.preprocess, device.split(":")[0])


def check_preprocess_device(preprocess: str, device_type: str) -> None:
    """``--preprocess gpu`` needs the model on a CUDA GPU (nvJPEG); said once the device is known."""
    if preprocess == "gpu" and device_type != "cuda":
        where = "the CPU" if device_type == "cpu" else device_type
        raise UsageError(f"--preprocess gpu decodes JPEGs with nvJPEG on a CUDA GPU, and the model runs on "
                         f"{where}: leave --preprocess out there")


def _check_model(model: ModelOptions) -> None:
    if model.kind is not None and model.kind not in MODEL_KINDS:
        raise UsageError(f"unknown model {model.kind!r}; use one of {', '.join(MODEL_KINDS)}")
    check_model_options(model.device, model.precision, ("--checkpoint", model.checkpoint),
                        ("--tag-list", model.tag_list), ("--tag-list-zh", model.tag_list_zh),
                        ("--thresholds", model.thresholds))
    if model.threshold is not None and not 0.0 <= model.threshold <= 1.0:
        raise UsageError(f"--threshold {model.threshold}: give a number from 0 to 1")
    if model.vocab not in VOCAB_MODES:
        raise UsageError(f"--vocab must be one of {', '.join(VOCAB_MODES)}, not {model.vocab!r}")
    if model.tags is None and (model.vocab != "open" or model.text_encoder is not None):
        raise UsageError("--vocab and --text-encoder go with --tags (open-set tags)")
    if model.text_encoder is not None:
        from ..paths import check_model_name

        check_model_name(model.text_encoder, "--text-encoder")
    if model.only_tags is not None:
        if not model.only_tags:
            raise UsageError("--only-tags names no tag; give names separated by commas or a file of one per line")
        if model.tags is not None and model.vocab == "open":
            raise UsageError("--only-tags picks built-in tags, which --vocab open leaves out; add --vocab both")


def only_tag_names(spec: str) -> tuple[str, ...]:
    """The names ``--only-tags`` gives: a file of one per line (a ``.txt`` name or a path with a
    folder in it), or names separated by commas. Read once, by the command line: the job carries
    the names themselves (a Ray actor elsewhere has no such file)."""
    separators = {"/", os.sep, os.altsep} - {None}
    if spec.endswith(".txt") or any(separator in spec for separator in separators):
        try:
            with open(spec, encoding="utf-8-sig") as handle:  # -sig: a byte-order mark is not a name
                names = [line.strip() for line in handle]
        except FileNotFoundError:
            raise UsageError(f"--only-tags {spec}: file not found; check the path, or give names separated by commas") from None
        except UnicodeDecodeError:
            raise UsageError(f"--only-tags {spec}: not UTF-8 text; save it as UTF-8") from None
        except OSError as exc:
            raise UsageError(f"--only-tags {spec}: cannot read it ({exc.strerror or exc})") from None
    else:
        names = [part.strip() for part in spec.split(",")]
    names = [name for name in names if name]
    if not names:
        raise UsageError(f"--only-tags {spec!r} names no tag; give names separated by commas or a file of one per line")
    return tuple(names)


def _check_outputs(job: Job, outputs: OutputOptions) -> None:
    from ..errors import OutputError
    from ..outputs.existing import check_not_an_input, existing_ancestor, parquet_ends, written_by_ramtag
    from ..outputs.formats import FORMATS, format_for, not_added_to

    if outputs.lang not in LANGS:
        raise UsageError(f"--lang must be one of {', '.join(LANGS)}, not {outputs.lang!r}")
    if outputs.save_every < 1:
        raise UsageError("--save-every must be at least 1")
    if outputs.format is not None and outputs.format not in FORMATS:
        raise UsageError(f"unknown format {outputs.format!r}; use one of {', '.join(FORMATS)}")
    model = job.model
    if outputs.lang != "en" and (
        (model.tag_list is not None and model.tag_list_zh is None) or (model.tags is not None and model.vocab == "open")
    ):
        raise UsageError(f"--lang {outputs.lang} needs Chinese tag names: pass --tag-list-zh")
    if job.cluster.engine != "local":
        return  # the Ray engine writes a folder: its own checks
    if outputs.out is not None:
        out = Path(outputs.out)
        if out.is_dir():
            raise UsageError(f"{out} is a folder: --out names the file to write, such as "
                             f"{out / ('tags.' + (outputs.format or 'parquet'))} (--engine ray writes a folder)")
        fmt = format_for(out, outputs.format)
        if out.is_file():
            check_not_an_input(out, job.inputs.paths)
        if out.is_file() and not outputs.overwrite:  # said before the model loads
            if not FORMATS[fmt].can_continue:
                raise OutputError(not_added_to(out))
            if not parquet_ends(out):
                raise OutputError(f"{out} already exists and is not a Parquet file; pass --overwrite to replace it")
            if not written_by_ramtag(out):
                raise OutputError(f"{out} already exists and was not written by ramtag; pass --overwrite to replace it")
        folder = existing_ancestor(out.parent)  # missing folders below it are created when the run starts
        if not folder.is_dir():
            raise UsageError(f"--out {out}: {folder} is a file, not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            why = "a read-only file system" if _read_only_mount(folder) else "permission denied"
            raise UsageError(f"--out {out}: cannot write in {folder} ({why})")
    elif outputs.format is not None and FORMATS[outputs.format].binary:
        raise UsageError(f"{FORMATS[outputs.format].label} needs a file: add --out FILE.{outputs.format}")
    if outputs.prune and outputs.out is None:
        raise UsageError("--prune removes rows of deleted files from --out FILE; it needs one "
                         "(a sidecar whose image is gone is only reported: 'ramtag xmp clean' takes it out)")
    if outputs.touch and not outputs.embed:
        raise UsageError("--touch goes with --embed (it sets the modification time of the photos written to)")
    if outputs.xmp or outputs.embed:
        if outputs.xmp_naming not in NAMINGS:
            raise UsageError(f"--xmp-naming must be one of {', '.join(NAMINGS)}, not {outputs.xmp_naming!r}")
        parent = outputs.xmp_parent
        if parent.strip(" |") != parent or "||" in parent:
            raise UsageError(f"--xmp-parent {parent!r}: no leading, trailing or doubled '|' (nor spaces at the ends)")
        if "/" in parent:  # digiKam's TagsList splits levels at '/', Lightroom's hierarchy at '|'
            raise UsageError(f"--xmp-parent {parent!r}: levels are separated by '|' ({parent.replace('/', '|')!r}); "
                             "a '/' would be a level in digiKam but part of the name in Lightroom")
        from ..inputs import is_plain_input
        from ..inputs.fs import is_url
        from ..inputs.patterns import expand_braces

        for path in job.inputs.paths:
            named = [path] if is_url(path) or os.path.exists(path) else expand_braces(path)
            if named == [path] and not os.path.exists(path) and not is_url(path):
                continue  # a typo: discovery says "input not found"
            if any(is_url(one) or not is_plain_input(one) for one in named):
                raise UsageError(SIDECARS_NEED_FILES if outputs.xmp else EMBED_NEEDS_FILES)
    if outputs.embed:
        from ..exiftool import find_exiftool

        find_exiftool()


def _check_cluster(job: Job) -> None:
    cluster = job.cluster
    if cluster.engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, not {cluster.engine!r}")
    if cluster.engine == "local":
        given = [name for name, value in (("--address", cluster.address),
                                          ("--num-gpus-per-worker", cluster.num_gpus_per_worker),
                                          ("--concurrency", cluster.concurrency)) if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} go with --engine ray")
        return
    # A Ray re-run skips committed parts and image files by key: it neither prunes nor hashes.
    for flag, given in (("--xmp", job.outputs.xmp), ("--embed", job.outputs.embed), ("--tags", job.model.tags),
                        ("--prune", job.outputs.prune), ("--content-hash", job.outputs.content_hash)):
        if given:
            raise UsageError(f"{flag} is not available with --engine ray yet; use the local engine")
    if job.outputs.out is None:
        raise UsageError("--engine ray writes a folder of Parquet parts: add --out FOLDER")
    if job.outputs.format not in (None, "parquet"):
        raise UsageError(f"--engine ray writes Parquet only, not {job.outputs.format}")


def _read_only_mount(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs on Windows
        return False
