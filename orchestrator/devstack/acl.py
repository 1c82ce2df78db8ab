"""Redis ACL users per role: who may run which commands on which keys (least privilege).

Every rule below follows from the commands the code sends (``orchestrator.bus.producer``,
``.consumer``, ``.housekeeping``, ``workers.mailbox``, ``orchestrator.watch``) and the key names
of ``orchestrator.bus.keys``. ``orchestrator dev up`` writes them to an ``aclfile`` (passwords
only as SHA-256 hashes); the README's production section gives the same rules as
``ACL SETUSER`` lines (:func:`setuser_command` prints them).

Roles
-----
``daemon``     everything on the namespace's keys (``~NS:*``), stream commands and the liveness
               keys (SCAN/MGET of ``NS:worker:*``; on a cluster ZRANGE of the registry
               ``NS:workers`` and GET); no admin, no pub/sub, no scripts.
``worker-N``   one user per worker ``N``: its own command stream ``NS:commands:{N}`` (consumer
               group reads, acks, claims); its liveness key ``NS:worker:N`` (SET … GET, DEL)
               and, on a cluster, its name in the registry ``NS:workers`` (ZADD, ZREM;
               ZREMRANGEBYSCORE drops names long dead);
               XADD only (no reads) on the event shards ``NS:events:*``, the control stream
               (the registration announcement) and the dead-letter stream (a bad command);
               read and write on every mailbox ``NS:job:*:mailbox:*`` (XADD, XREAD, EXPIRE).
               Redis cannot know which jobs a worker runs, so mailboxes are not confined per
               job: that needs the daemon's per-run MACs.
               XADD and EXPIRE (no reads) on the jobs' log streams ``NS:job:*:logs``.
``submitter``  XADD only on ``NS:submissions`` and ``NS:control``; besides, the watcher's
               read-only access, so that ``submit --wait``, ``cancel --wait``, ``status`` and
               ``watch`` work with the same credentials.
``watcher``    read-only commands on ``NS:*``.
``admin``      (dev stack only) all commands, for ``dev add-worker`` (``ACL LOAD``) and the
               readiness probe; never given to the orchestrator's processes.

Every role may also send what a Redis Cluster client needs to find the nodes (:data:`CLUSTER`).
The ``default`` user is off: an unauthenticated client is refused.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable

DAEMON = "daemon"
SUBMITTER = "submitter"
WATCHER = "watcher"
ADMIN = "admin"
WORKER_PREFIX = "worker-"

FIXED_ROLES: tuple[str, ...] = (DAEMON, SUBMITTER, WATCHER, ADMIN)
"""The users every stack has; workers get one user each (:func:`worker_user`)."""

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

CONNECTION = (
    "+auth +hello +ping +echo +select +reset +quit "
    "+client|setinfo +client|setname +client|getname +client|id"
)
"""What every client may send on connect (redis-py: HELLO/AUTH, CLIENT SETINFO) and PING."""

CLUSTER = "+cluster|slots +cluster|shards +command +asking"
"""What a Redis Cluster client sends to find the nodes (``CLUSTER SLOTS``) and the keys of
each command (``COMMAND``); read-only metadata. On a cluster every node loads the same users."""

READ_ONLY = (
    "+xread +xrange +xrevrange +xlen +xinfo|stream +xinfo|groups +xinfo|consumers +xpending "
    "+get +mget +exists +type +ttl +pttl +scan +zrange"
)
"""The read commands of watchers (and submitters): follow updates, show events, list workers."""

_BASE = f"resetkeys resetchannels -@all {CONNECTION} {CLUSTER}"


def _checked(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"invalid {what} {value!r}: use 1-64 letters, digits, '_', '.', '-'")
    return value


def worker_user(worker: str) -> str:
    """The ACL user name of worker ``worker``."""
    return WORKER_PREFIX + _checked(worker, "worker name")


def daemon_rules(ns: str) -> str:
    ns = _checked(ns, "namespace")
    return (f"{_BASE} +multi +exec +discard +@stream +get +mget +set +del +exists +expire "
            f"+pexpire +type +scan +zrange ~{ns}:*")


def worker_rules(ns: str, worker: str) -> str:
    ns, worker = _checked(ns, "namespace"), _checked(worker, "worker name")
    commands = f"{ns}:commands:{{{worker}}}"
    return (
        f"{_BASE} +multi +exec +discard "
        f"+xreadgroup +xack +xclaim +xautoclaim +xpending +xgroup|create ~{commands} "
        f"(%W~{ns}:events:* %W~{ns}:control %W~{ns}:dead-letter +xadd) "
        f"(~{ns}:worker:{worker} +set +get +del) "
        f"(~{ns}:workers +zadd +zrem +zremrangebyscore) "
        f"(~{ns}:job:*:mailbox:* +xadd +xread +expire) "
        f"(~{ns}:job:*:logs +xadd +expire)"
    )


def watcher_rules(ns: str) -> str:
    ns = _checked(ns, "namespace")
    return f"{_BASE} {READ_ONLY} %R~{ns}:*"


def submitter_rules(ns: str) -> str:
    ns = _checked(ns, "namespace")
    return f"{watcher_rules(ns)} (%W~{ns}:submissions %W~{ns}:control +xadd)"


def admin_rules() -> str:
    return "~* &* +@all"


def rules_for(user: str, ns: str) -> str:
    """The rules of ACL user ``user`` (a fixed role or ``worker-NAME``)."""
    if user == DAEMON:
        return daemon_rules(ns)
    if user == SUBMITTER:
        return submitter_rules(ns)
    if user == WATCHER:
        return watcher_rules(ns)
    if user == ADMIN:
        return admin_rules()
    if user.startswith(WORKER_PREFIX):
        return worker_rules(ns, user.removeprefix(WORKER_PREFIX))
    raise ValueError(f"unknown ACL user {user!r}")


def new_password() -> str:
    """A random password (URL-safe: it goes into ``redis://user:password@…`` URLs)."""
    return secrets.token_hex(24)


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def user_line(user: str, password: str, ns: str) -> str:
    """One ``aclfile`` line: the user on, its password as a hash only, its rules."""
    return f"user {user} reset on #{password_hash(password)} {rules_for(user, ns)}"


DEFAULT_OFF = "user default reset off resetkeys resetchannels -@all"
"""The ``aclfile`` line that disables the unauthenticated default user."""


def aclfile_text(lines: Iterable[str]) -> str:
    """An ``aclfile``: the default user off, then ``lines`` (each a :func:`user_line`)."""
    return "\n".join([DEFAULT_OFF, *lines]) + "\n"


def setuser_command(user: str, ns: str, password_placeholder: str = "<password>") -> str:
    """``ACL SETUSER`` for a real Redis (as in the README's production section)."""
    return f"ACL SETUSER {user} reset on >{password_placeholder} {rules_for(user, ns)}"


__all__ = [
    "ADMIN",
    "DAEMON",
    "DEFAULT_OFF",
    "FIXED_ROLES",
    "SUBMITTER",
    "WATCHER",
    "WORKER_PREFIX",
    "aclfile_text",
    "new_password",
    "rules_for",
    "setuser_command",
    "user_line",
    "worker_user",
]
