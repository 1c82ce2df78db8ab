"""The ClientApp: trains the global model on this node's partition, and evaluates it."""

from __future__ import annotations

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flower_app.task import evaluate, load_data, train

app = ClientApp()


def _partition(context: Context) -> int:
    return int(context.node_config["partition-id"])


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    arrays = msg.content.array_records["arrays"]
    w, b = arrays["w"].numpy(), arrays["b"].numpy()
    x, y = load_data(_partition(context))
    config = msg.content.config_records["config"]
    epochs = int(context.run_config.get("local-epochs", 1))
    lr, server_round = config.get("lr", 0.1), config.get("server-round", 0)
    w, b = train(w, b, x, y, epochs=epochs, lr=float(lr) if isinstance(lr, float) else 0.1,
                 seed=server_round if isinstance(server_round, int) else 0)
    loss, accuracy = evaluate(w, b, x, y)
    content = RecordDict({
        "arrays": ArrayRecord({"w": Array(w), "b": Array(b)}),
        "metrics": MetricRecord({"loss": loss, "accuracy": accuracy, "num-examples": len(y)}),
    })
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_fn(msg: Message, context: Context) -> Message:
    arrays = msg.content.array_records["arrays"]
    x, y = load_data(_partition(context))
    loss, accuracy = evaluate(arrays["w"].numpy(), arrays["b"].numpy(), x, y)
    metrics = MetricRecord({"loss": loss, "accuracy": accuracy, "num-examples": len(y)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
