"""Where a participant's data may be: ``data_path`` confined to the worker's data root.

A spec is data from a submitter; the files a worker reads are its operator's. With a data root
(``orchestrator worker --data-root DIR``, ``ORCHESTRATOR_DATA_ROOT``) a ``data_path`` is
relative to it: an absolute path, a ``..`` component, a NUL byte, or a path whose symlinks
resolve outside the root is refused, and the workload sees the resolved absolute path. Without
a data root the path is passed on as given, but ``..`` components and NUL bytes are still
refused.
"""

from __future__ import annotations

import os


class DataPathError(ValueError):
    """A ``data_path`` this worker refuses; the message names the path and the root."""


def confine(data_path: str | None, root: str | None) -> str | None:
    """The path the workload reads for ``data_path`` under ``root``; raises
    :class:`DataPathError` when it is not allowed."""
    if data_path is None:
        return None
    where = f"the data root {root}" if root is not None else "this worker (no data root)"
    if "\x00" in data_path:
        raise DataPathError(f"data_path {data_path!r} contains a NUL byte; refused by {where}")
    if ".." in data_path.replace("\\", "/").split("/"):
        raise DataPathError(f"data_path {data_path!r} has a '..' component; refused by {where}")
    if root is None:
        return data_path
    if os.path.isabs(data_path):
        raise DataPathError(f"data_path {data_path!r} is absolute; it must be relative to "
                            f"the data root {root}")
    real_root = os.path.realpath(root)
    resolved = os.path.realpath(os.path.join(real_root, data_path))
    if os.path.commonpath([real_root, resolved]) != real_root:
        raise DataPathError(f"data_path {data_path!r} resolves to {resolved}, outside the "
                            f"data root {root}")
    return resolved
