"""URLs read through fsspec: which inputs are URLs, and the filesystem that serves one.

The filesystems of cloud stores come from their own packages (s3fs, gcsfs, adlfs); a missing one is
named in the error, with the ``pip install`` that provides it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
# The package that provides each common scheme's filesystem, for the error when it is missing.
_PACKAGES = {
    "s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
    "abfss": "adlfs", "adl": "adlfs", "http": "aiohttp", "https": "aiohttp", "oci": "ocifs",
    "hdfs": "pyarrow", "sftp": "paramiko", "ssh": "paramiko", "smb": "smbprotocol",
}


def is_url(text: str) -> bool:
    return _URL.match(text) is not None



def filesystem(url: str) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem for ``url`` and the path within it; a missing package is named."""
    match = _URL.match(url)
    scheme = match.group(1).lower() if match else "file"
    try:
        import fsspec.core
    except ImportError:
        raise UsageError(f"{url}: URLs need fsspec: pip install fsspec") from None
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError:
        package = _PACKAGES.get(scheme, f"the fsspec filesystem package for {scheme}://")
        raise UsageError(f"{url}: reading {scheme}:// URLs needs {package}: pip install {package}") from None
    except ValueError as error:
        raise UsageError(f"{url}: cannot use this URL ({error})") from None
