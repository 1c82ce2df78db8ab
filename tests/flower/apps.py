"""Flower apps for the tests (the example app is ``examples/flower-app``): a slow client, apps
that fail, and an app in Flower's legacy API (``ServerApp(server_fn=...)``, ``NumPyClient``)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from flower_app import client_app as example_client
from flower_app.task import evaluate, initial_weights, load_data, train
from flwr.app import Context, Message
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters
from flwr.server import ServerAppComponents, ServerConfig
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.serverapp import Grid, ServerApp

SLOW_S = 0.4

slow_client = ClientApp()


@slow_client.train()
def slow_train(msg: Message, context: Context) -> Message:
    time.sleep(SLOW_S)
    reply: Message = example_client.train_fn(msg, context)
    return reply


@slow_client.evaluate()
def slow_evaluate(msg: Message, context: Context) -> Message:
    reply: Message = example_client.evaluate_fn(msg, context)
    return reply


failing_server = ServerApp()


@failing_server.main()
def failing_main(grid: Grid, context: Context) -> None:
    raise RuntimeError("the strategy broke in round 1")


failing_client = ClientApp()


@failing_client.train()
def failing_train(msg: Message, context: Context) -> Message:
    if int(context.node_config["partition-id"]) == 0:
        raise ValueError("client 0 has a bad shard")
    reply: Message = example_client.train_fn(msg, context)
    return reply


@failing_client.evaluate()
def failing_evaluate(msg: Message, context: Context) -> Message:
    reply: Message = example_client.evaluate_fn(msg, context)
    return reply


class _LegacyClient(NumPyClient):
    def __init__(self, partition: int) -> None:
        self.x, self.y = load_data(partition)

    def fit(self, parameters: list[Any], config: dict[str, Any]) -> tuple[list[Any], int,
                                                                           dict[str, Any]]:
        w, b = train(parameters[0], parameters[1], self.x, self.y, epochs=1, lr=0.5, seed=0)
        return [w, b], len(self.y), {"loss": evaluate(w, b, self.x, self.y)[0]}

    def evaluate(self, parameters: list[Any], config: dict[str, Any]) -> tuple[float, int,
                                                                                dict[str, Any]]:
        loss, accuracy = evaluate(parameters[0], parameters[1], self.x, self.y)
        return loss, len(self.y), {"accuracy": accuracy}


def _legacy_client_fn(context: Context) -> Any:
    return _LegacyClient(int(context.node_config["partition-id"])).to_client()


legacy_client = ClientApp(client_fn=_legacy_client_fn)


def _legacy_server_fn(context: Context) -> ServerAppComponents:
    rounds = int(context.run_config["num-server-rounds"])
    w, b = initial_weights()
    strategy = LegacyFedAvg(min_available_clients=2, min_fit_clients=2,
                            min_evaluate_clients=2,
                            initial_parameters=ndarrays_to_parameters([w, b]))
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))


legacy_server = ServerApp(server_fn=_legacy_server_fn)

__all__ = ["failing_client", "failing_server", "legacy_client", "legacy_server", "np",
           "slow_client"]
