"""Fetching the released weights and the official data files, and checking them before use.

Weights come from the Hugging Face Hub through ``huggingface_hub``, which brings its cache
(``HF_HOME``), ``HF_ENDPOINT``, resumable downloads and the progress bar. After a download the file's
sha256 is compared once with the one the Hub lists; the result is remembered
(``verified``) so later runs neither re-hash the file nor ask the Hub for its sha256 again.

The three data files (tag list, Chinese tag list, thresholds) are 20-45 kB each, pinned by commit
and sha256 in ``registry``; they live in ``cache_dir()/data/<commit>/`` and are re-hashed every time
they are handed out, so a damaged copy is never used. ``fetch_pinned`` does the same for any other
pinned file of that commit (the benchmarks' label files).

``RAMTAG_DATA_URL`` points the data downloads at a mirror. Either a base URL under which the
official repository tree at the pinned commit lies (``<base>/ram/data/ram_tag_list.txt``), or a
format string with any of ``{path}``, ``{filename}``, ``{commit}`` and ``{repo}``
(e.g. ``http://mirror.local/ram/{filename}``). ``file://`` URLs work too.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..version import __version__
from ..atomic import write_atomically
from ..errors import ChecksumError, ResourceUnavailableError, UsageError
from ..hashing import sha256_file, sha256_of
from ..paths import cache_dir, offline
from .registry import (
    DATA_FILES,
    OFFICIAL_COMMIT,
    OFFICIAL_REPO,
    WEIGHTS,
    DataFile,
    WeightsSource,
)
from .verified import blob_sha256, hub_errors, hub_sha256, remember_verified, remembered, verify_download

DATA_URL_ENV = "RAMTAG_DATA_URL"
_TIMEOUT_S = 30
# The largest official data file is 44 kB; a longer response cannot match its sha256 anyway.
_MAX_DATA_BYTES = 16 << 20
_OFFLINE_VARS = "HF_HUB_OFFLINE / RAMTAG_OFFLINE"
# What each data file is called in messages, and the flag that replaces it.
_DATA_HELP = {
    "tag_list": ("tag list", "--tag-list"),
    "tag_list_zh": ("Chinese tag list", "--tag-list-zh"),
    "thresholds": ("thresholds", "--thresholds"),
}


@dataclass(frozen=True)
class FileCheck:
    """A cached file re-hashed from disk and compared with the sha256 it must have.

    ``expected`` is None when nothing is known to compare with (weights never verified against the
    Hub while it was out of reach); ``path`` is None when the file is not cached.
    """

    name: str
    path: Path | None
    sha256: str | None = None
    expected: str | None = None

    @property
    def ok(self) -> bool:
        return self.sha256 is not None and self.expected in (None, self.sha256)


# --- data files -------------------------------------------------------------------------------


def _data_entry(name: str) -> DataFile:
    try:
        return DATA_FILES[name]
    except KeyError:
        raise UsageError(f"unknown data file {name!r}; known: {', '.join(DATA_FILES)}") from None


def data_dir() -> Path:
    """Where the data files of the pinned commit are cached; copy it to prepare an offline machine."""
    return cache_dir() / "data" / OFFICIAL_COMMIT


def pinned_url(entry: DataFile) -> str:
    """The URL a pinned file is downloaded from: the pinned GitHub commit, or ``RAMTAG_DATA_URL``."""
    template = os.environ.get(DATA_URL_ENV, "").strip()
    if not template:
        return entry.url
    if "{" in template:
        try:
            return template.format(path=entry.path, filename=entry.filename, commit=OFFICIAL_COMMIT, repo=OFFICIAL_REPO)
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            raise UsageError(
                f"{DATA_URL_ENV}={_without_credentials(template)!r} is not a URL template ramtag can fill ({type(exc).__name__}: {exc}): "
                "it may hold {path}, {filename}, {commit} and {repo}, or be a base URL without braces"
            ) from None
    return f"{template.rstrip('/')}/{entry.path}"


def data_url(name: str) -> str:
    """The URL the registered data file ``name`` is downloaded from (see ``pinned_url``)."""
    return pinned_url(_data_entry(name))


def cached_data_file(name: str) -> Path | None:
    """The cached copy of a data file, unchecked (for listing); None when absent. No network."""
    path = data_dir() / _data_entry(name).filename
    return path if path.is_file() else None


def data_file(name: str, *, instead: str | None = None) -> Path:
    """The official data file, downloaded on first use and checked against its pinned sha256.

    ``instead`` says how to do without the download; by default, what a command that reads the file
    offers (its flag, or a copy made by ``ramtag models download``).
    """
    entry = _data_entry(name)
    what, flag = _DATA_HELP[name]
    if instead is None:
        instead = f"pass {flag} PATH, or run `ramtag models download` on a connected machine and copy {data_dir()} here"
    return fetch_pinned(entry, what=what, instead=instead)


def download_advice() -> tuple[str, str]:
    """How ``ramtag models download`` itself can do without a download that failed (data files,
    weights): its own advice would be to pass flags it does not have, or to run it again."""
    elsewhere = "run this command on a connected machine and copy"
    data = f"{elsewhere} {data_dir()} here (or point {DATA_URL_ENV} at a mirror)"
    weights = f"{elsewhere} its Hugging Face cache (HF_HOME) here (or point HF_ENDPOINT at a mirror)"
    return data, weights


def fetch_pinned(entry: DataFile, *, what: str, instead: str, max_bytes: int = _MAX_DATA_BYTES) -> Path:
    """Any file of the official repository at the pinned commit, registered or not (the benchmarks'
    label files too), cached in ``data_dir()`` and re-hashed on every use so a damaged copy is never used.

    ``what`` names the file in messages and ``instead`` says how to do without the download; a
    response longer than ``max_bytes`` is cut there, so it can only fail the sha256 check.
    """
    target = data_dir() / entry.filename
    if target.is_file():
        actual = sha256_of(target)
        if actual == entry.sha256:
            return target
        if offline():
            raise ChecksumError(
                f"{target}: the cached {what} is damaged (sha256 {actual[:12]}…, expected {entry.sha256[:12]}…)"
                f" and ramtag is offline ({_OFFLINE_VARS}): delete it, then {instead}"
            )
        # Online, a damaged copy is replaced below; if that fails it must not linger either.
        with contextlib.suppress(OSError):
            target.unlink()
    elif offline():
        raise ResourceUnavailableError(
            f"the official {what} ({entry.filename}) is not cached and ramtag is offline ({_OFFLINE_VARS}): {instead}"
        )
    _download_pinned(entry, target, instead, max_bytes)
    return target


def _download_pinned(entry: DataFile, target: Path, instead: str, max_bytes: int) -> None:
    import http.client  # with urllib.request, 0.04 s: loaded for a download, not by every command line
    import urllib.error
    import urllib.request

    url = pinned_url(entry)
    shown = _without_credentials(url)
    request = urllib.request.Request(url, headers={"User-Agent": f"ramtag/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            payload = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise ResourceUnavailableError(f"cannot download {shown}: HTTP {exc.code} {exc.reason}; {instead}") from None
    except urllib.error.URLError as exc:
        raise ResourceUnavailableError(f"cannot download {shown}: {exc.reason}; {instead}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise ResourceUnavailableError(f"cannot download {shown}: {_one_line(exc)}; {instead}") from None
    actual = hashlib.sha256(payload).hexdigest()
    if actual != entry.sha256:
        raise ChecksumError(
            f"{shown} sent a file with sha256 {actual[:12]}…, not the pinned {entry.sha256[:12]}…; nothing was"
            f" cached. Check {DATA_URL_ENV} or your proxy, or {instead}"
        )
    _write_atomic(target, payload)


def _without_credentials(url: str) -> str:
    """The URL as shown to users: a mirror's ``user:password@`` must never reach a log."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _write_atomic(target: Path, payload: bytes) -> None:
    """Write beside the target and rename, so a reader never sees half a file."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, payload, durable=False)  # re-hashed whenever it is used
    except OSError as exc:
        raise ResourceUnavailableError(
            f"cannot write {target}: {exc.strerror or exc}; set RAMTAG_CACHE to a writable folder"
        ) from None


def check_data_file(name: str) -> FileCheck:
    """Re-hash the cached copy of a data file against its pinned sha256. No network."""
    entry = _data_entry(name)
    path = cached_data_file(name)
    return FileCheck(name, path, sha256_of(path) if path else None, entry.sha256)


# --- weights --------------------------------------------------------------------------------


def weights_source(name: str) -> WeightsSource:
    """The released checkpoint called ``name``; a UsageError lists the known names."""
    try:
        return WEIGHTS[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; known: {', '.join(WEIGHTS)}") from None


def cached_weights(name: str) -> Path | None:
    """The checkpoint in the Hugging Face cache, unchecked; None when absent. No network."""
    from huggingface_hub import try_to_load_from_cache

    source = weights_source(name)
    found = try_to_load_from_cache(source.repo_id, source.filename, repo_type=source.repo_type)
    return Path(found) if isinstance(found, str) else None


def weights_file(name: str, *, progress: bool = True, instead: str | None = None) -> Path:
    """The released checkpoint, downloaded through the Hub cache and checked against the Hub's sha256.

    Offline, only the cache is looked at and no check is made (the Hub is out of reach). ``instead``
    says how to do without the download, as for ``data_file``.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import LocalEntryNotFoundError

    source = weights_source(name)
    is_offline = offline()
    if instead is None:
        instead = (
            f"pass --checkpoint PATH, or run `ramtag models download {name}` on a connected machine"
            " and copy its Hugging Face cache (HF_HOME) here"
        )
    try:
        with warnings.catch_warnings():  # said below, in ramtag's words, if the download fails for it
            warnings.filterwarnings("ignore", message="Not enough free disk space")
            found = hf_hub_download(
                source.repo_id,
                source.filename,
                repo_type=source.repo_type,
                local_files_only=is_offline,
                library_name="ramtag",
                library_version=__version__,
                tqdm_class=None if progress else _quiet_bar(),
            )
    except hub_errors() as exc:
        if getattr(exc, "errno", None) == errno.ENOSPC:
            from huggingface_hub import constants

            raise ResourceUnavailableError(
                f"cannot download {source.display}: no space left in {constants.HF_HUB_CACHE} (the released "
                "weights take about 3 GB); free some, or point HF_HOME at a disk with room"
            ) from None
        if getattr(exc, "errno", None) in (errno.EROFS, errno.EACCES, errno.EPERM):
            from huggingface_hub import constants

            raise ResourceUnavailableError(
                f"cannot download {source.display}: cannot write in the Hugging Face cache {constants.HF_HUB_CACHE} "
                f"({exc.strerror}); point HF_HOME at a folder you can write to, or {instead.removeprefix('or ')}"
            ) from None
        if is_offline and isinstance(exc, LocalEntryNotFoundError):
            raise ResourceUnavailableError(
                f"{source.display} is not in the Hugging Face cache and ramtag is offline ({_OFFLINE_VARS}): {instead}"
            ) from None
        again = "" if isinstance(exc, LocalEntryNotFoundError) else "run the command again to retry, or "
        raise ResourceUnavailableError(f"cannot download {source.display}: {_one_line(exc)}; {again}{instead}") from None
    path = Path(found)
    if not is_offline:
        verify_download(source, path)
        return path
    # Offline the Hub cannot be asked, but a file checked once can be again, and a file the cache
    # keeps under its sha256 (a cache copied from another machine) can be checked against its name.
    verified = remembered(path)
    expected = verified or blob_sha256(path)
    if expected is not None and sha256_file(path) != expected:
        said = "no longer the {} it had when downloaded" if verified else "not the {} its name in the Hugging Face cache says"
        raise ChecksumError(
            f"{path.resolve()}: sha256 {said.format(expected[:12] + '…')}: the file is damaged (a bad copy?);"
            f" delete it and run `ramtag models download {source.name}` again (on a connected machine)"
        )
    return path


def check_weights(name: str) -> FileCheck:
    """Re-hash the cached checkpoint (no memo) against the sha256 verified earlier or, online, the Hub's."""
    path = cached_weights(name)
    if path is None:
        return FileCheck(name, None)
    actual = sha256_file(path, remember=False)
    expected = remembered(path) or blob_sha256(path)
    if expected is None and not offline():
        expected = hub_sha256(weights_source(name), path)
        if expected == actual:
            remember_verified(path, actual)
    return FileCheck(name, path, actual, expected)


def _quiet_bar() -> type:
    """A progress-bar class that never draws, for callers that show their own progress."""
    from huggingface_hub.utils import tqdm as hub_tqdm

    class QuietBar(hub_tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return QuietBar


def _one_line(exc: BaseException) -> str:
    """The first line of an error's message: huggingface_hub's run over several lines."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip().rstrip(".")
    return type(exc).__name__
