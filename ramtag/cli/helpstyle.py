"""How help pages and usage errors look: like a well-kept CLI (``gh``, ``hf``), the same on every command.

- Values read as words (``PATH``, ``INTEGER``, ``en|zh|both``, ``TEXT...``); a flag shows none (newer
  Typer prints ``<bool>``, ``<list[Path]>``, ``<int range>``).
- ``-h`` is ``--help``; every command ends its help with examples (``EXAMPLES``).
- A mistake Typer or Click finds (an unknown option, a bad choice) is one ``error:`` line and a hint,
  exit 2, like ramtag's own usage errors, instead of a box.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from ..text import terminal_text  # what reaches the terminal: a path given may hold control characters

# Typer may bring its own copy of Click: its exception classes, found from one Typer exports.
_USAGE_ERROR: type[Exception] = next(k for k in typer.BadParameter.__mro__ if k.__name__ == "UsageError")
_CLICK_EXCEPTION: type[Exception] = next(k for k in typer.BadParameter.__mro__ if k.__name__ == "ClickException")
_NO_ARGS: type[Exception] | None = getattr(sys.modules[_USAGE_ERROR.__module__], "NoArgsIsHelpError", None)

CONTEXT = {"help_option_names": ["-h", "--help"]}

_WORDS = {
    "bool": None, "int": "INTEGER", "int range": "INTEGER", "float": "FLOAT", "float range": "FLOAT",
    "str": "TEXT", "path": "PATH", "Path": "PATH", "file": "FILE", "directory": "FOLDER", "dir": "FOLDER",
}

EXAMPLES: dict[str, list[str]] = {
    "ramtag": [
        "ramtag run ./photos --out tags.parquet",
        "ramtag run ./photos --embed",
        'ramtag describe "cat wearing a hat" --out hat.json',
        "ramtag eval --pred tags.parquet --gt labels.csv",
    ],
    "run": [
        "ramtag run ./photos --out tags.parquet",
        "ramtag run ./photos --embed             # keywords into the photos themselves",
        "ramtag run ./photos --xmp --lang both   # XMP sidecars, English and Chinese",
    ],
    "eval": [
        "ramtag eval --pred tags.parquet --gt labels.csv",
        "ramtag eval --benchmark openimages_common_214 --images ./openimages",
    ],
    "describe": [
        'ramtag describe "cat wearing a hat" --out hat.json',
        'ramtag describe "red panda" --llm none --out panda.json  # no LLM: templates',
        "ramtag run ./photos --tags hat.json --out tags.parquet",
    ],
    "bench": [
        "ramtag bench --random-weights --synthetic 64",
        "ramtag bench --images ./photos --precision int8 --json",
    ],
    "serve": [
        "ramtag serve                  # the API and a page to try it: 127.0.0.1:8000",
        "ramtag serve --host 0.0.0.0   # PhotoPrism elsewhere; token in $RAMTAG_TOKEN",
        "curl -F files=@photo.jpg http://127.0.0.1:8000/v1/tag",
    ],
    "models": ["ramtag models list", "ramtag models download", "ramtag models verify"],
    "models list": ["ramtag models list", "ramtag models list --json"],
    "models download": ["ramtag models download", "ramtag models download ram", "ramtag models download --all",
                        "ramtag models download --benchmarks   # for ramtag eval --benchmark offline"],
    "models verify": ["ramtag models verify", "ramtag models verify ram", "ramtag models verify --checkpoint my.pth"],
    "xmp": ["ramtag xmp clean ./photos --dry-run", "ramtag xmp clean ./photos"],
    "xmp clean": ["ramtag xmp clean ./photos --dry-run", "ramtag xmp clean ./photos/IMG_1.CR2.xmp"],
}


def epilog(command: str) -> str:
    """The examples ending a command's help (each on its own line)."""
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in EXAMPLES[command])


def _as_words(original: Any) -> Any:
    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if self.metavar is not None:
            return self.metavar
        if getattr(self, "is_flag", False):
            return None
        shown = original(self, ctx)
        if shown is None:
            return None
        many = shown.endswith("...")
        label = shown.removesuffix("...").strip("<>")
        if label.startswith("list[") and label.endswith("]"):
            label, many = label[5:-1], True
        label = _WORDS.get(label, label)
        if label is None:
            return None
        return label + ("..." if many else "")

    return display_type_rich


def _no_option_as_a_value(original: Any) -> Any:
    """``invoke`` refusing an option's value that is another option of the command: a value left
    out (``--include --checkpoint x.pth``, ``--out --overwrite``) took the next option as the value
    and sent its own value elsewhere, which then failed far from the mistake."""

    def invoke(self: Any, ctx: Any) -> Any:
        names = {name for param in self.params for name in (*param.opts, *param.secondary_opts)
                 if name.startswith("-") and name != "-"} | set(CONTEXT["help_option_names"])
        for param in self.params:
            if param.param_type_name != "option" or getattr(param, "is_flag", False):
                continue
            value = ctx.params.get(param.name)
            for item in value if isinstance(value, (list, tuple)) else [value]:
                text = str(item) if isinstance(item, (str, os.PathLike)) else ""
                if text.split("=", 1)[0] in names:
                    raise _USAGE_ERROR(f"{param.opts[0]} needs a value before the next option; it got {text}", ctx=ctx)
        return original(self, ctx)

    invoke._ramtag = True  # type: ignore[attr-defined]
    return invoke


def install() -> None:
    """Make Typer's help show values as words (only where Typer has its own way of showing them),
    and its commands refuse an option given as another option's value."""
    from typer import core

    for kind in (core.TyperOption, core.TyperArgument):
        original = getattr(kind, "display_type_rich", None)
        if original is not None and not getattr(original, "_ramtag", False):
            styled = _as_words(original)
            styled._ramtag = True  # type: ignore[attr-defined]
            kind.display_type_rich = styled  # type: ignore[method-assign]
    if not getattr(core.TyperCommand.invoke, "_ramtag", False):
        core.TyperCommand.invoke = _no_option_as_a_value(core.TyperCommand.invoke)  # type: ignore[method-assign]
    from rich.console import Console

    if not getattr(Console.on_broken_pipe, "_ramtag", False):
        Console.on_broken_pipe = _reader_gone(Console.on_broken_pipe)  # type: ignore[method-assign]


def _reader_gone(original: Any) -> Any:
    """Rich's broken-pipe handler, ending with 0: the reader of ``ramtag models list | head -1`` or
    ``--help | head`` has what it wanted (rich said 1, which fails a script under pipefail), as
    ``ramtag run ... | head`` ends (``common.reporting_errors``)."""

    def on_broken_pipe(self: Any) -> None:
        try:
            original(self)
        except SystemExit:
            raise SystemExit(0) from None

    on_broken_pipe._ramtag = True  # type: ignore[attr-defined]
    return on_broken_pipe


def shell_completion_without_installer() -> bool:
    """Make the completion scripts in ``completions/`` work without Typer's ``--install-completion``
    (which edits ~/.bashrc): one documented way to install completion. False if this Typer cannot."""
    try:
        from typer.completion import completion_init
    except ImportError:
        return False
    completion_init()
    return True


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    from ..errors import RamtagWarning

    if issubclass(category, RamtagWarning) or filename.startswith(_PACKAGE):
        print(f"warning: {terminal_text(str(message))}", file=sys.stderr)
    else:
        _default_show(message, category, filename, lineno, file, line)


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # ramtag/
_default_show = None  # set by run()


def run(app: Any) -> None:
    """Run the Typer ``app`` with Click's own errors as ramtag prints its errors (and its warnings
    as one ``warning:`` line)."""
    import warnings

    global _default_show
    _default_show = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        code = app(standalone_mode=False)
    except _USAGE_ERROR as error:
        context = getattr(error, "ctx", None)
        if _NO_ARGS is not None and isinstance(error, _NO_ARGS) and context is not None:
            # `ramtag` or `ramtag models` alone: the help, once. The error was made from
            # `get_help()`, which with rich installed printed the help itself and returned nothing.
            text = error.format_message()  # type: ignore[attr-defined]
            if text.strip():
                print(text, file=sys.stderr)
            sys.exit(2)
        where = context.command_path if context is not None else "ramtag"
        message = " ".join(error.format_message().split())  # type: ignore[attr-defined]
        message = message.removeprefix("Value error, ").replace(": Value error, ", ": ")
        dashed = next((arg for arg in sys.argv[1:] if arg.startswith("-") and len(arg) > 1 and os.path.exists(arg)), None)
        if dashed is not None and "option" in message:  # `ramtag run -x.jpg`: a file, read as options
            message += f"; {dashed} is a file: write it ./{dashed}"
        print(f"error: {terminal_text(message)} (see '{where} --help')", file=sys.stderr)
        sys.exit(2)
    except _CLICK_EXCEPTION as error:
        print(f"error: {terminal_text(error.format_message())}", file=sys.stderr)  # type: ignore[attr-defined]
        sys.exit(getattr(error, "exit_code", 1))
    except typer.Abort:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
