"""A decoded command request and the server-shaped errors handlers raise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pymongo.errors

from orchestrator.devstack.mongowire.protocol import Document

# The numeric codes and names a real server uses; drivers branch on the numbers.
CODE_NAMES: dict[int, str] = {
    1: "InternalError",
    2: "BadValue",
    9: "FailedToParse",
    13: "Unauthorized",
    14: "TypeMismatch",
    20: "IllegalOperation",
    26: "NamespaceNotFound",
    27: "IndexNotFound",
    43: "CursorNotFound",
    48: "NamespaceExists",
    59: "CommandNotFound",
    72: "InvalidOptions",
    73: "InvalidNamespace",
    85: "IndexOptionsConflict",
    115: "CommandNotSupported",
    238: "NotImplemented",
    11000: "DuplicateKey",
    40571: "MissingDbName",
}

BAD_VALUE = 2
DUPLICATE_KEY = 11000


class CommandError(Exception):
    """A failure that is answered with ``{ok: 0, errmsg, code, codeName}``."""

    def __init__(self, code: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg

    def to_reply(self) -> Document:
        """The command reply a real server would send for this error."""
        return {
            "ok": 0.0,
            "errmsg": self.errmsg,
            "code": self.code,
            "codeName": CODE_NAMES.get(self.code, "UnknownError"),
        }

    def to_write_error(self, index: int) -> Document:
        """The ``writeErrors`` entry for the statement at ``index`` of a batch."""
        return {"index": index, "code": self.code, "errmsg": self.errmsg}


def translate(
    exc: Exception, *, default_code: int = BAD_VALUE, namespace: str = ""
) -> CommandError:
    """Turn whatever mongomock raised into the error a real server would report."""
    if isinstance(exc, CommandError):
        return exc
    if isinstance(exc, pymongo.errors.DuplicateKeyError):
        return CommandError(DUPLICATE_KEY, f"E11000 duplicate key error collection: {namespace}")
    if isinstance(exc, pymongo.errors.OperationFailure):
        return CommandError(exc.code or default_code, str(exc))
    if isinstance(exc, pymongo.errors.InvalidName):
        return CommandError(73, str(exc))
    if isinstance(exc, NotImplementedError):
        return CommandError(238, f"not supported by the mongowire stand-in: {exc}")
    if isinstance(exc, ValueError | TypeError | KeyError | pymongo.errors.PyMongoError):
        return CommandError(default_code, str(exc) or type(exc).__name__)
    return CommandError(1, f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True, slots=True)
class Request:
    """One command: its name (the body's first key), target database and full body."""

    name: str
    db: str
    body: Document
    connection_id: int

    @property
    def target(self) -> str:
        """The collection name given as the command's value (``{find: "jobs"}``)."""
        value = self.body[self.name]
        if not isinstance(value, str) or not value:
            raise CommandError(73, f"collection name must be a non-empty string, not {value!r}")
        return value

    @property
    def namespace(self) -> str:
        """``<db>.<collection>`` for the command's target."""
        return f"{self.db}.{self.target}"

    def get(self, key: str, default: Any = None) -> Any:
        """An optional field of the command body."""
        return self.body.get(key, default)

    def document(self, key: str) -> Document:
        """An optional sub-document field, ``{}`` when absent or null."""
        value = self.body.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise CommandError(14, f"{self.name}.{key} must be a document, not {value!r}")
        return value

    def integer(self, key: str, default: int = 0) -> int:
        """An optional numeric field, coerced to ``int``."""
        value = self.body.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CommandError(14, f"{self.name}.{key} must be a number, not {value!r}")
        return int(value)
