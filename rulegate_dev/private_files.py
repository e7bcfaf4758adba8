"""Files that hold secrets (passwords, private keys, configs quoting them): 0600 files in 0700 directories.

Both are created with their final mode (no window in which another user can open them) and
an existing file or directory is narrowed to it.
"""
from __future__ import annotations

import atexit
import os
import shutil
import stat
import tempfile
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create path (and parents) if needed, make it 0700 and return it.

    A shared directory (sticky bit, like /tmp) given by mistake is left as it is."""
    out = Path(path)
    out.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if not out.stat().st_mode & stat.S_ISVTX:
        out.chmod(DIR_MODE)
    return out


def write_private(path: str | os.PathLike[str], content: str | bytes) -> Path:
    """Write content to path as a 0600 file (replacing its content) and return the path."""
    out = Path(path)
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), FILE_MODE)
        f.write(data)
    return out


def scratch_dir(prefix: str) -> Path:
    """Return a new private temporary directory removed when the process exits (after the caller's own
    finally blocks stopped whatever ran in it): benchmarks leave nothing behind in /tmp."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path
