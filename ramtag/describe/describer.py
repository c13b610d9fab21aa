"""Tags in, 51 descriptions per tag out: the photo line plus ten answers to each of five questions.

The work is one job per (tag, question), run by a bounded number of threads. A job first takes what the
cache holds, then asks only for what is missing, and caches each reply as it arrives; so a second
run sends nothing and an interrupted one picks up where it stopped.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
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
    """51 descriptions for each tag, in the given order, asked of ``answerer``.

    The first failure ends it at once: no job sends another request, and requests in flight are
    not waited for (nor on Ctrl-C); their threads are daemons, whose answers are cached if they
    come before the process ends.
    """
    names = check_tags(tags)
    jobs = [(tag, prompt) for tag in names for prompt in questions(tag)]
    limit = concurrency if answerer.max_concurrency is None else min(concurrency, answerer.max_concurrency)
    todo: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
    for job in jobs:
        todo.put(job)
    finished: queue.SimpleQueue[tuple[tuple[str, str], list[str] | None, BaseException | None]] = queue.SimpleQueue()
    stop = threading.Event()  # set on the first failure: no job starts another request

    def work() -> None:
        while not stop.is_set():
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            try:
                finished.put((job, _answers(answerer, cache, *job, stop), None))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                stop.set()  # before the next job of this thread, or of another, sends anything
                finished.put((job, None, exc))
                return

    for _ in range(max(1, min(limit, len(jobs)))):
        threading.Thread(target=work, name="ramtag-describe", daemon=True).start()
    answers: dict[tuple[str, str], list[str]] = {}
    try:
        while len(answers) < len(jobs):
            job, got, error = finished.get()
            if isinstance(error, _Stopped):
                continue  # another job failed: its error is on its way
            if error is not None:
                raise error
            answers[job] = got or []
            if on_progress is not None:
                on_progress(1)
    finally:
        stop.set()
    return {
        tag: [photo_line(tag)] + [text for prompt in questions(tag) for text in answers[tag, prompt]]
        for tag in names
    }


# A reply with no usable text, this many times in a row for one question, is the model's way: a
# reasoning model that spends its tokens thinking answers with empty content (null), every time.
_EMPTY_REPLIES = 3


def _answers(
    answerer: Answerer, cache: AnswerCache, tag: str, prompt: str, stop: threading.Event
) -> list[str]:
    key = answer_key(answerer.identity, answerer.model_name, prompt, tag)
    have = cache.get(key)
    empty = 0
    while len(have) < ANSWERS_PER_PROMPT:
        if stop.is_set():
            raise _Stopped
        replies = answerer.complete(prompt, ANSWERS_PER_PROMPT - len(have))
        got = [text for text in replies if text.strip()][: ANSWERS_PER_PROMPT - len(have)]
        if not got:
            empty += 1
            if empty >= _EMPTY_REPLIES:
                what = "no choices" if not replies else "empty text"
                raise LLMError(
                    f"{answerer.identity}: {empty} replies in a row with {what} to {prompt!r} (model "
                    f"{answerer.model_name!r}); a reasoning model may spend its tokens thinking: use one that "
                    "answers directly (--llm-model), or --llm none for ramtag's templates"
                )
            continue
        empty = 0
        cache.add(key, got)  # empty answers are never kept
        have += got
    return have[:ANSWERS_PER_PROMPT]


class _Stopped(Exception):
    """Another job failed first; this one gives up before sending anything."""
