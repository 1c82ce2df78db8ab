"""The ``flower`` workload's configuration, per role. It imports no Flower code: the worker
validates configs (and advertises their schemas) even where ``flwr`` is not installed."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
_APP_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
                      r":[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

Scalar = bool | int | float | str
"""A value of a Flower ``UserConfig`` (run config, node config)."""

DEFAULT_IDLE_TIMEOUT_S = 3600.0


def _check_app(value: str) -> str:
    if not _APP_REF.match(value):
        msg = f"{value!r} is not a 'module:attribute' reference (e.g. 'my_app.server:app')"
        raise ValueError(msg)
    return value


class FlowerServerConfig(BaseModel):
    """The server participant: runs the Flower ``ServerApp``."""

    model_config = _STRICT

    app: str = Field(description="the ServerApp as 'module:attribute', importable on the "
                     "server's worker (e.g. 'flower_app.server_app:app')")
    run_config: dict[str, Scalar] = Field(
        default_factory=dict, description="the ServerApp's Context.run_config "
        "('num-server-rounds' defaults to the spec's rounds)")

    _app = field_validator("app")(_check_app)


class FlowerClientConfig(BaseModel):
    """A client participant: runs the Flower ``ClientApp`` for each message of the server."""

    model_config = _STRICT

    app: str = Field(description="the ClientApp as 'module:attribute', importable on the "
                     "client's worker (e.g. 'flower_app.client_app:app')")
    run_config: dict[str, Scalar] = Field(
        default_factory=dict, description="the ClientApp's Context.run_config")
    node_config: dict[str, Scalar] = Field(
        default_factory=dict, description="extra Context.node_config entries "
        "('partition-id', 'num-partitions' and 'data-path' are set from the spec)")
    idle_timeout_s: float = Field(DEFAULT_IDLE_TIMEOUT_S, gt=0, description="give up after "
                                  "this long without a message from the server")

    _app = field_validator("app")(_check_app)
