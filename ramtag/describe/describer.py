"""Tags in, 51 descriptions per tag out: the photo line plus ten answers to each of five questions.

The work is one job per (tag, question), run by a bounded thread pool. A job first takes what the
cache holds, then asks only for what is missing, and caches each reply as it arrives; so a second
run sends nothing and an interrupted one picks up where it stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Protocol

from .cache import AnswerCache, answer_key
from .errors import LLMError
from .prompts import ANSWERS_PER_PROMPT, photo_line, questions, template_descriptions


class Answerer(Protocol):
    """Anything that samples answers: an HTTP endpoint or a local model."""

    model_name: str
    max_concurrency: int | None
    requests: int

    @property
    def identity(self) -> str: ...

    def complete(self, prompt: str, n: int) -> list[str]: ...


Progress = Callable[[int], None]  # called with the number of (tag, question) jobs just finished


def check_tags(tags: Sequence[str]) -> list[str]:
    """Stripped tag names; empty names and repeats are errors, since the file maps tag → texts."""
    from ..errors import UsageError

    cleaned = [tag.strip() for tag in tags]
    if not cleaned:
        raise UsageError("no tags to describe: give tag names or --from-file FILE")
    seen: set[str] = set()
    for tag in cleaned:
        if not tag:
            raise UsageError("an empty tag name was given")
        if tag in seen:
            raise UsageError(f"the tag {tag!r} is given twice")
        seen.add(tag)
    return cleaned


def describe_with_templates(tags: Sequence[str]) -> dict[str, list[str]]:
    """Descriptions without any language model (``--llm none``)."""
    return {tag: template_descriptions(tag) for tag in check_tags(tags)}


def describe(
    tags: Sequence[str],
    answerer: Answerer,
    *,
    cache: AnswerCache,
    concurrency: int = 4,
    on_progress: Progress | None = None,
) -> dict[str, list[str]]:
    """51 descriptions for each tag, in the given order, asked of ``answerer``."""
    names = check_tags(tags)
    jobs = [(tag, prompt) for tag in names for prompt in questions(tag)]
    limit = concurrency if answerer.max_concurrency is None else min(concurrency, answerer.max_concurrency)
    answers: dict[tuple[str, str], list[str]] = {}
    stop = threading.Event()  # set on the first failure: no job starts another request
    pool = ThreadPoolExecutor(max_workers=max(1, limit), thread_name_prefix="ramtag-describe")
    try:
        futures: dict[Future, tuple[str, str]] = {
            pool.submit(_answers, answerer, cache, tag, prompt, stop): (tag, prompt)
            for tag, prompt in jobs
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                answers[futures[future]] = future.result()  # re-raises the first failure
            if on_progress is not None and done:
                on_progress(len(done))
    except BaseException as exc:
        # Queued jobs are dropped; requests in flight finish and cache their answers (on Ctrl-C
        # they are not waited for).
        stop.set()
        pool.shutdown(wait=not isinstance(exc, KeyboardInterrupt), cancel_futures=True)
        raise
    pool.shutdown()
    return {
        tag: [photo_line(tag)] + [text for prompt in questions(tag) for text in answers[tag, prompt]]
        for tag in names
    }


def _answers(
    answerer: Answerer, cache: AnswerCache, tag: str, prompt: str, stop: threading.Event
) -> list[str]:
    key = answer_key(answerer.identity, answerer.model_name, prompt, tag)
    have = cache.get(key)
    while len(have) < ANSWERS_PER_PROMPT:
        if stop.is_set():
            raise _Stopped
        got = answerer.complete(prompt, ANSWERS_PER_PROMPT - len(have))
        if not got:
            raise LLMError(f"{answerer.identity}: an empty reply (no choices) to {prompt!r}")
        got = got[: ANSWERS_PER_PROMPT - len(have)]
        cache.add(key, got)
        have += got
    return have[:ANSWERS_PER_PROMPT]


class _Stopped(Exception):
    """Another job failed first; this one gives up before sending anything."""
