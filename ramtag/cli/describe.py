"""``ramtag describe``: write LLM descriptions (and optionally CLIP embeddings) for open-set tags."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import OutputError, UsageError
from .common import DeviceOpt, err_console, plural

if TYPE_CHECKING:
    from ..describe.describer import Answerer

QUESTIONS = 5  # (tag, question) jobs per tag, what the bar counts

LLM_PANEL = "Language model"
EMBED_PANEL = "Embeddings"


def describe_command(
    tags: Annotated[
        Optional[list[str]],
        typer.Argument(help="Tag names, e.g. \"cat wearing a hat\" \"red umbrella\".", show_default=False),
    ] = None,
    from_file: Annotated[
        Optional[Path],
        typer.Option("--from-file", help="Also describe the tags in this file, one per line ('#' comments).", dir_okay=False),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="Descriptions JSON to write (default: stdout).", dir_okay=False),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
    llm: Annotated[
        str,
        typer.Option(
            "--llm",
            help="api: an OpenAI-compatible endpoint (--base-url, --llm-model); hf:REPO_OR_DIR: a local "
            "transformers causal LM; none: ramtag's templates, no language model.",
            rich_help_panel=LLM_PANEL,
        ),
    ] = "api",
    base_url: Annotated[
        Optional[str],
        typer.Option(
            "--base-url", envvar="OPENAI_BASE_URL",
            help="Chat-completions endpoint, e.g. http://localhost:11434/v1 for Ollama "
            "(default: https://api.openai.com/v1).",
            rich_help_panel=LLM_PANEL, show_default=False,
        ),
    ] = None,
    model: Annotated[
        str, typer.Option("--llm-model", help="Model name at the endpoint.", rich_help_panel=LLM_PANEL)
    ] = "gpt-4o-mini",
    old_model: Annotated[  # the name before --model meant RAM or RAM++ everywhere else
        Optional[str], typer.Option("--model", hidden=True, help="Old name of --llm-model.")
    ] = None,
    api_key: Annotated[
        Optional[str],
        typer.Option("--api-key", help="API key (else the key file, else $OPENAI_API_KEY).", rich_help_panel=LLM_PANEL, show_default=False),
    ] = None,
    api_key_file: Annotated[
        Optional[Path],
        typer.Option(
            "--api-key-file", dir_okay=False, rich_help_panel=LLM_PANEL, show_default=False,
            help="File holding the key, readable by its owner only (chmod 600) "
            "(default: ~/.config/ramtag/api_key).",
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Requests in flight at once.", rich_help_panel=LLM_PANEL)] = 4,
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds to wait for one reply.", rich_help_panel=LLM_PANEL)] = 60.0,
    retries: Annotated[int, typer.Option("--retries", min=0, help="Retries of a request that got 429, 5xx or no reply.", rich_help_panel=LLM_PANEL)] = 5,
    embed: Annotated[
        bool,
        typer.Option("--embed", help="Also write the CLIP label embeddings next to --out (.safetensors).", rich_help_panel=EMBED_PANEL),
    ] = False,
    text_encoder: Annotated[
        Optional[str],
        typer.Option(
            "--text-encoder", help="CLIP text model: Hub id or local folder (default: openai/clip-vit-base-patch16).",
            rich_help_panel=EMBED_PANEL, show_default=False,
        ),
    ] = None,
    device: DeviceOpt = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary; errors only.")] = False,
) -> None:
    """Describe tags the way RAM++ was trained: 51 texts per tag, for `ramtag run --tags`.

    Answers are cached, so running again costs no requests and an interrupted run resumes.
    """
    model = old_model if old_model is not None else model
    from ..describe.files import (
        descriptions_json,
        embeddings_path_for,
        read_tag_names,
        write_descriptions,
    )
    from ..model.labels import read_lines

    names = list(tags or [])
    if from_file is not None:
        names += read_tag_names(read_lines(from_file, "tag file"))
    if embed and out is None:
        raise UsageError("--embed writes next to the descriptions file: add --out FILE.json")
    if embed:  # before any request is sent
        from ..describe.encoder import DEFAULT_TEXT_ENCODER, check_encoder_available
        from ..paths import check_model_name

        check_model_name(text_encoder or DEFAULT_TEXT_ENCODER, "--text-encoder")
        check_encoder_available(text_encoder or DEFAULT_TEXT_ENCODER)
    targets = [out] + ([embeddings_path_for(out)] if embed and out is not None else [])
    for target in targets:
        if target is not None and target.exists() and not overwrite:
            raise OutputError(f"{target} exists; pass --overwrite to replace it")
    descriptions, sent = _describe(
        names, llm, base_url=base_url, model=model, api_key=api_key, api_key_file=api_key_file,
        concurrency=concurrency, timeout=timeout, retries=retries, device=device, quiet=quiet,
    )
    embedded = None
    if embed:  # before anything is written: an encoder that cannot load leaves no file to refuse next time
        from ..describe.encoder import DEFAULT_TEXT_ENCODER
        from ..devices import resolve_device
        from ..openset import embed_cached

        embedded = embed_cached(
            descriptions, text_encoder or DEFAULT_TEXT_ENCODER, device=str(resolve_device(device))
        )
    if out is None:
        sys.stdout.write(descriptions_json(descriptions))
    else:
        write_descriptions(out, descriptions)
    if embedded is not None:
        from ..describe.files import write_embeddings

        write_embeddings(embeddings_path_for(out), embedded)
    if not quiet:
        where = f" → {out}" if out is not None else ""
        also = f" and {embeddings_path_for(out)}" if embed else ""
        requests = "" if sent is None else f" ({sent} requests sent)"
        err_console.print(
            f"described {plural(len(descriptions), 'tag')}{requests}{where}{also}", markup=False, soft_wrap=True
        )


def _describe(
    names: list[str], llm: str, *, quiet: bool, device: str, **options: Any
) -> tuple[dict[str, list[str]], int | None]:
    """The descriptions and the number of requests sent (``None`` without a language model)."""
    from ..describe.describer import check_tags, describe, describe_with_templates

    names = check_tags(names)
    if llm == "none":
        return describe_with_templates(names), None
    answerer = _answerer(llm, device=device, **options)
    from ..describe.cache import AnswerCache

    with _QuestionBar(len(names) * QUESTIONS, quiet) as advance:
        descriptions = describe(
            names, answerer, cache=AnswerCache(), concurrency=options["concurrency"], on_progress=advance
        )
    return descriptions, answerer.requests


def _answerer(llm: str, *, device: str, base_url: str | None, model: str, api_key: str | None,
              api_key_file: Path | None, timeout: float, retries: int, concurrency: int) -> Answerer:
    if llm.startswith("hf:") and len(llm) > 3:
        from ..describe.local import LocalCausalLM
        from ..devices import resolve_device

        return LocalCausalLM(llm[3:], device=str(resolve_device(device)))
    if llm != "api":
        raise UsageError(f"unknown --llm {llm!r}; use api, hf:REPO_OR_DIR or none")
    from ..describe.endpoint import DEFAULT_BASE_URL, ChatEndpoint, RetryPolicy
    from ..describe.keys import ENV_VAR, default_key_file, resolve_api_key

    key = resolve_api_key(api_key, api_key_file)
    if key is None and (base_url is None or base_url.rstrip("/") == DEFAULT_BASE_URL.rstrip("/")):
        looked = api_key_file if api_key_file is not None else default_key_file()
        raise UsageError(
            f"no API key for {DEFAULT_BASE_URL}: none in --api-key, {looked} or ${ENV_VAR}. Set one, "
            "or use --llm none (ramtag's templates, no network), a local server (--base-url "
            "http://localhost:11434/v1 for Ollama), or --llm hf:MODEL"
        )
    return ChatEndpoint(
        base_url or DEFAULT_BASE_URL, model, api_key=key, timeout_s=timeout, retry=RetryPolicy(retries=retries),
    )


class _QuestionBar:
    """A bar on a terminal (questions answered); nothing otherwise."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.bar = None
        if not quiet and err_console.is_terminal:
            self.bar = Progress(
                TextColumn("describing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=err_console, transient=True,
            )
            self.task = self.bar.add_task("describing", total=total)

    def __enter__(self) -> Callable[[int], None] | None:
        if self.bar is None:
            return None
        self.bar.start()
        return lambda done: self.bar.update(self.task, advance=done)

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.stop()
