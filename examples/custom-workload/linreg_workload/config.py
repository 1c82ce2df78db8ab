"""The typed configuration of ``linreg``: the worker validates each participant's ``config``
against these models before the workload runs, and fails the participant at once, naming the
field, when it does not fit (``samples: Input should be a valid integer``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class ServerConfig(BaseModel):
    """``server.config`` of a linreg job."""

    model_config = _STRICT

    seed: int = Field(0, description="seed of the true weights (the clients must agree)")
    features: int = Field(3, ge=1, le=64, description="features of the synthetic problem")
    round_timeout_s: float = Field(60.0, gt=0, description="how long to wait for updates")


class ClientConfig(BaseModel):
    """Each client's ``config`` of a linreg job."""

    model_config = _STRICT

    seed: int = Field(0, description="seed of the true weights (the server's)")
    features: int = Field(3, ge=1, le=64, description="features of the synthetic problem")
    samples: int = Field(200, ge=1, le=1_000_000, strict=True,
                         description="size of the synthetic local data set")
    noise: float = Field(0.1, ge=0, description="standard deviation of the label noise")
    lr: float = Field(0.1, gt=0, le=1, description="learning rate of the local steps")
    local_steps: int = Field(10, ge=1, le=10_000, description="gradient steps per round")
    idle_timeout_s: float = Field(120.0, gt=0,
                                  description="give up after this long without the server")
