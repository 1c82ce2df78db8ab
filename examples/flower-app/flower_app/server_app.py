"""The ServerApp: FedAvg over the clients, with a held-out evaluation of each round's model."""

from __future__ import annotations

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from flower_app.task import evaluate, initial_weights, load_data

app = ServerApp()


def central_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    """The global model on the server's held-out data (partition -1)."""
    x, y = load_data(-1, samples=1000)
    loss, accuracy = evaluate(arrays["w"].numpy(), arrays["b"].numpy(), x, y)
    return MetricRecord({"loss": loss, "accuracy": accuracy})


@app.main()
def main(grid: Grid, context: Context) -> None:
    num_rounds = int(context.run_config["num-server-rounds"])
    min_nodes = int(context.run_config.get("min-nodes", 2))
    w, b = initial_weights()
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=min_nodes,
                      min_evaluate_nodes=min_nodes, min_available_nodes=min_nodes)
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord({"w": Array(w), "b": Array(b)}),
        train_config=ConfigRecord({"lr": float(context.run_config.get("lr", 0.5))}),
        num_rounds=num_rounds,
        evaluate_fn=central_evaluate,
    )
    final = result.evaluate_metrics_serverapp.get(num_rounds)
    print(f"final held-out metrics: {final}")
