"""One error tree. Adapters translate driver exceptions into these; nothing else leaks.

``TransientError`` subclasses mean a retry may help; ``PermanentError`` ones mean it will not.
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Root of every error this project raises on purpose."""


class TransientError(OrchestratorError):
    """Retrying later may succeed (connection loss, timeouts, throttling)."""


class PermanentError(OrchestratorError):
    """Retrying will not help (bad input, missing object, refused transition)."""


class ConfigError(PermanentError):
    """Settings are missing or invalid."""


class InvalidSpecError(PermanentError):
    """A job spec or submission failed validation."""


class StoreError(OrchestratorError):
    """Job store failure (base)."""


class StoreUnavailableError(StoreError, TransientError):
    """The database could not be reached or timed out."""


class JobNotFoundError(StoreError, PermanentError):
    """No job with that id."""


class ConflictError(StoreError, TransientError):
    """A compare-and-set lost its race too many times."""


class BusError(OrchestratorError):
    """Event bus failure (base)."""


class BusUnavailableError(BusError, TransientError):
    """Redis could not be reached or timed out."""


class StorageError(OrchestratorError):
    """Object storage failure (base). ``transient`` says whether a retry may help."""

    transient: bool = False


class ObjectNotFoundError(StorageError):
    """No object under that key."""


class ObjectExistsError(StorageError):
    """The object exists and overwrite was not requested."""


class IntegrityError(StorageError):
    """Stored bytes do not match their recorded sha256."""


class StorageUnavailableError(StorageError, TransientError):
    """The object store could not be reached or refused for now."""

    transient = True


class WorkloadError(OrchestratorError):
    """A workload failed; carries the message reported in the ``failed`` event."""


class UnknownWorkloadError(PermanentError):
    """No workload registered under that name."""


class JobRejectedError(PermanentError):
    """The daemon refused a submission (``kind``: invalid_spec, duplicate_job, …)."""

    def __init__(self, job_id: str, kind: str, reason: str) -> None:
        super().__init__(f"job {job_id} was rejected: {kind}: {reason}")
        self.job_id, self.kind, self.reason = job_id, kind, reason


class WaitTimeoutError(TransientError):
    """A job did not finish within the time a caller was willing to wait."""


_NOISE_MARKERS = (" (configured timeouts", ", Timeout:", ", Topology Description")


def error_gist(exc: BaseException, max_chars: int = 300) -> str:
    """The gist of an error for one line of output: its first line, without pymongo's
    timeout and topology dump."""
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    for marker in _NOISE_MARKERS:
        text = text.split(marker, 1)[0]
    return text[:max_chars]
