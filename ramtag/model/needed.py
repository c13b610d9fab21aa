"""Before loading: every file a run needs, found or not, so that a first run offline fails at once
with the whole list instead of one missing file at a time after retries.

``check_available`` looks in the caches only (no network). When something is missing it asks each
host the downloads would use for an answer (a connection within 5 s, then any HTTP answer to a HEAD
within 10 s; nothing through a proxy): a name that does not resolve, a refused connection, a
firewall that drops it, or a host that accepts and never answers will not get better by retrying
(huggingface_hub's retries took 7 minutes on the last), so the run stops there with one error that
lists each missing file, where ramtag looked for it, the command that fetches them on a connected
machine, and the options and variables to use here. A host that answers lets the downloads go
ahead (and retry what is worth retrying).
"""

from __future__ import annotations

import functools
import socket
import urllib.parse
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import ResourceUnavailableError
from ..paths import offline

CONNECT_SECONDS = 5.0
ANSWER_SECONDS = 10.0


@dataclass(frozen=True)
class Needed:
    what: str  # "weights", "tag list", ...
    name: str  # file name
    looked: str  # where ramtag looked for it
    flag: str  # the option that provides it instead
    url: str  # where it would be downloaded from


def missing_files(
    *, weights: str | None, tag_list: bool, tag_list_zh: bool, thresholds: bool
) -> list[Needed]:
    """What a load would download: ``weights`` (a released model's name, or None with --checkpoint)
    and the official data files not given (``tag_list`` etc.: whether the official one is used)."""
    from .download import cached_data_file, data_dir, pinned_url, weights_source
    from .registry import DATA_FILES

    found = []
    if weights is not None:
        from huggingface_hub import constants

        from .download import cached_weights

        source = weights_source(weights)
        if cached_weights(weights) is None:
            folder = Path(constants.HF_HUB_CACHE) / f"models--{source.repo_id.replace('/', '--')}"
            endpoint = constants.ENDPOINT.rstrip("/")
            found.append(Needed("weights", source.filename, str(folder), "--checkpoint",
                                f"{endpoint}/{source.repo_id}/resolve/main/{source.filename}"))
    for name, used, what, flag in (("tag_list", tag_list, "tag list", "--tag-list"),
                                   ("tag_list_zh", tag_list_zh, "Chinese tag list", "--tag-list-zh"),
                                   ("thresholds", thresholds, "thresholds", "--thresholds")):
        if used and cached_data_file(name) is None:
            entry = DATA_FILES[name]
            found.append(Needed(what, entry.filename, str(data_dir()), flag, pinned_url(entry)))
    return found


def check_model_files(
    checkpoint: object | None, *, model: str | None, tag_list: object | None, tag_list_zh: object | None,
    thresholds: object | None, options: Collection[str] | None = None,
) -> list[Needed]:
    """``check_available`` for the files ``load_tagger`` would download with these arguments;
    ``options``: the ones the command has, if not all (``eval`` has no --tag-list-zh). Returns
    those files: they are downloaded next, which a command says before a wait of minutes."""
    official = tag_list is None  # the official lists, downloaded at first use
    needed = missing_files(
        weights=(model or "ram_plus") if checkpoint is None else None,
        tag_list=official, tag_list_zh=official and tag_list_zh is None, thresholds=official and thresholds is None,
    )
    if options is not None:
        needed = [item if item.flag in options else replace(item, flag="") for item in needed]
    given = Path(str(checkpoint)).expanduser() if checkpoint is not None else None
    missing = [Needed("checkpoint", given.name, str(given.parent.resolve()), "", "")] \
        if needed and given is not None and given.suffix and not given.exists() else []  # named with the rest
    check_available(missing + needed, model=model or "ram_plus")
    return needed


def check_available(needed: list[Needed], *, model: str) -> None:
    """Raise one error naming every file in ``needed`` when they cannot be downloaded now."""
    if not needed:
        return
    if offline():
        problem = "ramtag is offline (HF_HUB_OFFLINE or RAMTAG_OFFLINE is set) and these files are not cached"
    else:
        reasons = [reason for reason in dict.fromkeys(unreachable(item.url) for item in needed) if reason]
        if not reasons:
            return  # the hosts answer: the downloads go ahead
        problem = f"cannot download the files ramtag needs ({'; '.join(reasons)}), and they are not cached"
    lines = [f"{problem}:"]
    width = max(len(item.what) for item in needed)
    for item in needed:
        instead = f"; or pass {item.flag} PATH" if item.flag else ""
        lines.append(f"  {item.what:<{width}}  {item.name}  (looked in {item.looked}{instead})")
    lines.append(
        f"On a connected machine run `ramtag models download {model}`, copy the folders above to the same "
        "places here (or point HF_HOME and RAMTAG_CACHE at copies), and set HF_HUB_OFFLINE=1 so that ramtag never "
        "tries the network" + ("; or pass the files with the options above." if any(i.flag for i in needed) else ".")
    )
    raise ResourceUnavailableError("\n".join(lines))


def unreachable(url: str) -> str | None:
    """Why ``url``'s host cannot be reached now, or None when it can (or it is a local file)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    proxies = urllib.request.getproxies()
    if (proxies.get(parts.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(parts.hostname):
        return None  # through a proxy: only the download itself can tell
    return _probe(parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


@functools.lru_cache(maxsize=16)
def _probe(scheme: str, host: str, port: int) -> str | None:
    """One question per host and process: the run's check and the model load's ask the same."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_SECONDS):
            pass
    except socket.gaierror as error:
        return f"{host} does not resolve: {error.strerror or error}"
    except ConnectionRefusedError:
        return f"{host}:{port} refused the connection"
    except TimeoutError:
        return f"{host}:{port} did not take a connection within {CONNECT_SECONDS:g} s (a firewall dropping it?)"
    except OSError:
        return None  # flaky (a reset...): worth the download's own retries
    return _silent(f"{scheme}://{host}:{port}/", host)


def _silent(url: str, host: str) -> str | None:
    """Why ``url`` gives no HTTP answer (None when it answers anything, an error status included)."""
    import http.client
    import urllib.error

    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        direct.open(urllib.request.Request(url, method="HEAD"), timeout=ANSWER_SECONDS).close()
    except urllib.error.HTTPError:
        return None  # an answer
    except (urllib.error.URLError, TimeoutError) as error:  # urllib wraps a timeout while connecting
        if isinstance(getattr(error, "reason", error), TimeoutError):
            return f"{host} took the connection but did not answer within {ANSWER_SECONDS:g} s"
        return None  # TLS and the like: the download says it better
    except (OSError, http.client.HTTPException):
        return None
    return None
