"""Private directories and files of the dev stack: directories 0700, files 0600 (the servers
started here run with :data:`PRIVATE_UMASK`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

PRIVATE_UMASK = 0o077
"""The umask of every server started here: its data and logs are the owner's only."""


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def private_file(path: Path, mode: str = "w") -> IO[Any]:
    """Open ``path`` for writing (``"w"``, ``"wb"``, ``"a"``, ``"ab"``), created 0600 and made
    0600 if it existed, before anything is written to it."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, mode)


def tighten(root: Path) -> None:
    """Make every directory under ``root`` (itself included) 0700 and every file 0600
    (for data written before these modes were enforced)."""
    if not root.exists():
        return
    os.chmod(root, 0o700)
    for current, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(Path(current, name), 0o700)
        for name in files:
            file = Path(current, name)
            if not file.is_symlink():
                os.chmod(file, 0o600)
