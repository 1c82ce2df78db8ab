"""fedavg's configuration, per role: the worker validates a participant's config against these
before the workload runs (unknown keys and bad values fail the participant at once), and
``docs/workloads.md`` is generated from them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from workers.workloads.fedavg.data import (
    DEFAULT_CLASSES,
    DEFAULT_FEATURES,
    DEFAULT_SAMPLES,
    DEFAULT_TEST_SAMPLES,
)

DEFAULT_ROUND_TIMEOUT_S = 300.0
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class FedAvgServerConfig(BaseModel):
    """The server: averages the clients' updates, evaluates on its held-out set."""

    model_config = _STRICT

    seed: int = Field(0, description="seed of the synthetic problem (clients must agree)")
    features: int = Field(DEFAULT_FEATURES, ge=1, description="features of the synthetic data")
    classes: int | None = Field(None, ge=2, description="classes of the model (default: the "
                                "held-out data's; synthetic data: 4)")
    test_samples: int = Field(DEFAULT_TEST_SAMPLES, ge=1,
                              description="size of the synthetic held-out set")
    round_timeout_s: float = Field(DEFAULT_ROUND_TIMEOUT_S, gt=0,
                                   description="how long to wait for the clients' updates")
    initial_checkpoint: str | None = Field(None, description="checkpoint key to start from")
    min_round_s: float = Field(0.0, ge=0, le=3600,
                               description="each round but the last lasts at least this "
                               "long: a pace for demos and dashboards (0: as fast as it goes)")


class FedAvgClientConfig(BaseModel):
    """A client: trains the global model on its local data each round."""

    model_config = _STRICT

    seed: int = Field(0, description="seed of the synthetic problem (the server's)")
    features: int = Field(DEFAULT_FEATURES, ge=1, description="features of the synthetic data")
    classes: int = Field(DEFAULT_CLASSES, ge=2, description="classes of the synthetic data")
    samples: int = Field(DEFAULT_SAMPLES, ge=1, description="size of the synthetic shard")
    epochs: int = Field(2, ge=1, description="local epochs per round")
    lr: float = Field(0.5, ge=0, description="learning rate of the local SGD")
    batch_size: int = Field(32, ge=1, description="mini-batch size")
    round_timeout_s: float = Field(DEFAULT_ROUND_TIMEOUT_S, gt=0,
                                   description="expected longest round")
    idle_timeout_s: float | None = Field(None, ge=0, description="give up after this long "
                                         "without a message from the server (default: twice "
                                         "round_timeout_s)")
