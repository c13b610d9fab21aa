"""What every command shares: the error mapping, the consoles and the model options."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import RamtagError
from ..model.config import MODEL_KINDS, PREPROCESSING
from ..precision import CHOICES as PRECISION_CHOICES
from ..text import terminal_text

# Diagnostics go to stderr; stdout carries data only.
err_console = Console(stderr=True, highlight=False)


F = TypeVar("F", bound=Callable[..., Any])


def choices(name: str, values: Iterable[str]) -> Any:
    """A string Enum for Typer from the one list of a choice's values (formats, languages...)."""
    return Enum(name, {value: value for value in values}, type=str)


def mapping_errors(command: F) -> F:
    """``command`` with ramtag's errors as one line and an exit code: applied to every command
    once, where the app registers them (``cli/app.py``)."""

    @functools.wraps(command)
    def mapped(*args: Any, **kwargs: Any) -> Any:
        with reporting_errors():
            return command(*args, **kwargs)

    return mapped  # type: ignore[return-value]


def plural(count: int, noun: str, ending: str = "s") -> str:
    """``1 image``, ``2 images``; ``ending`` for other plurals (``batch``, ``es``)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}{ending}"


def path_text(path: Path | None) -> str | None:
    """A path option as a job holds it (plain text, JSON-ready)."""
    return str(path) if path is not None else None


@contextmanager
def reporting_errors() -> Iterator[None]:
    """Turn expected failures into one line on stderr and an exit code.

    ``RAMTAG_DEBUG=1`` re-raises them with their traceback instead.
    """
    try:
        yield
    except RamtagError as exc:
        if os.environ.get("RAMTAG_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {escape(terminal_text(str(exc), lines=True))}", markup=True, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None
    except BrokenPipeError:
        # The reader went away (`ramtag run ... | head`): what it wanted it has; end quietly. Python
        # would complain again when flushing stdout at exit, so stdout now goes nowhere.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        raise typer.Exit(0) from None


MODEL_PANEL = "Model"


def completes(values: Iterable[str]) -> Callable[[str], list[str]]:
    """Shell completion for an option whose values are checked by ramtag rather than by Click."""
    choices = tuple(values)
    return lambda incomplete: [value for value in choices if value.startswith(incomplete)]


ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        metavar="|".join(MODEL_KINDS),
        autocompletion=completes(MODEL_KINDS),
        help="Which model: ram_plus (RAM++) or ram. With --checkpoint, the file must be of this kind.",
        rich_help_panel=MODEL_PANEL,
    ),
]
CheckpointOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--checkpoint",
        help="Official .pth (or converted .safetensors) weights file; default: download the release.",
        dir_okay=False,
        rich_help_panel=MODEL_PANEL,
    ),
]
TagListOpt = Annotated[
    Optional[Path],
    typer.Option("--tag-list", help="Tag list, one tag per line, in class order.", dir_okay=False, rich_help_panel=MODEL_PANEL),
]
TagListZhOpt = Annotated[
    Optional[Path],
    typer.Option("--tag-list-zh", help="Chinese tag list in the same order.", dir_okay=False, rich_help_panel=MODEL_PANEL),
]
ThresholdsOpt = Annotated[
    Optional[Path],
    typer.Option("--thresholds", help="Per-tag thresholds, one per line in the tag list's order (or named, as eval --calibrate writes them).", dir_okay=False, rich_help_panel=MODEL_PANEL),
]
ThresholdOpt = Annotated[
    Optional[float],
    typer.Option("--threshold", help="One threshold for every tag (overrides --thresholds).", min=0.0, max=1.0, rich_help_panel=MODEL_PANEL),
]
OnlyTagsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--only-tags",
        help="Score only these built-in tags (names separated by commas, English or Chinese, or a "
        ".txt file of one per line): the others are not computed, which makes the tagging head "
        "faster; their scores stay those of a full run (to rounding).",
        rich_help_panel=MODEL_PANEL,
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option("--device", metavar="DEVICE", autocompletion=completes(("auto", "cpu", "cuda", "mps")),
                 help="auto, cpu, cuda, cuda:N or mps.", rich_help_panel=MODEL_PANEL),
]
PrecisionOpt = Annotated[
    str,
    typer.Option("--precision", metavar="NAME", autocompletion=completes(PRECISION_CHOICES), help="auto, fp32, bf16, bf16-mixed, fp16 or int8 (auto: bf16-mixed on CPUs with native bf16, AMX or AVX-512 BF16, fp32 on other CPUs, fp16 on GPUs; bf16-mixed: bf16 in the MLPs of Swin's first two stages and the decoder's feed-forward layers, the rest fp32; int8: CPUs only, scores move slightly).", rich_help_panel=MODEL_PANEL),
]

SPEED_PANEL = "Speed"

BatchSizeOpt = Annotated[
    Optional[int],
    typer.Option(
        "--batch-size",
        min=1,
        help="Images per model call (default: 1 on CPUs, where larger batches measured slower; 64 on GPUs).",
        rich_help_panel=SPEED_PANEL,
        show_default=False,
    ),
]
DraftDecodeOpt = Annotated[
    bool,
    typer.Option(
        "--draft-decode",
        help="Decode JPEGs at reduced scale (1/2 to 1/8, never below the model's input): decoding "
        "several times faster, scores slightly different (see README), so off by default.",
        rich_help_panel=SPEED_PANEL,
    ),
]
IgnoreOrientationOpt = Annotated[
    bool,
    typer.Option(
        "--ignore-orientation",
        help="Read images as stored, without turning them upright by their EXIF orientation, as the "
        "official code does (to reproduce its scores on rotated photos; camera raws stay upright).",
        rich_help_panel=MODEL_PANEL,
    ),
]
Preprocess = choices("Preprocess", PREPROCESSING)
PreprocessOpt = Annotated[
    Preprocess,  # type: ignore[valid-type]
    typer.Option(
        "--preprocess",
        help="Where images become the model's input: pillow, in the decoding workers exactly as the "
        "official code; gpu, plain JPEGs decoded with nvJPEG and resized on the GPU in batches (CUDA "
        "only; other files by Pillow): for GPUs whose host has too few cores to decode. Scores "
        "differ slightly from pillow's, so outputs record it.",
        rich_help_panel=SPEED_PANEL,
    ),
]
WorkersOpt = Annotated[
    Optional[int],
    typer.Option(
        "--workers",
        min=0,
        help="Decoding processes (default: for a GPU model cores - 1, at most 32, as decoding sets "
        "the pace there, at most 8 with --preprocess gpu; for a CPU model min(4, cores - 1), none on "
        "2 cores or fewer; 0 decodes in the main process).",
        rich_help_panel=SPEED_PANEL,
    ),
]
