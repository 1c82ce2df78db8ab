# %% [markdown]
# # The orchestrator from a notebook
#
# Run a local stack first (in a terminal):
#
# ```bash
# orchestrator dev up --worker server-1 --worker client-1 --worker client-2
# D=.orchestrator-dev
# (set -a; . $D/env.daemon; set +a; orchestrator daemon) &
# (set -a; . $D/env.worker.server-1; set +a; orchestrator worker --role server --name server-1) &
# for i in 1 2; do
#   (set -a; . $D/env.worker.client-$i; set +a
#    orchestrator worker --role client --name client-$i) &
# done
# ```
#
# Then start the notebook with the submitter's settings (`set -a; . $D/env; set +a; jupyter lab`),
# or load them in the first cell as below. `SyncClient` works although the notebook's own
# event loop is running: the client runs its loop in a thread of its own.

# %%
import os
from pathlib import Path

env_file = Path(".orchestrator-dev/env")
if env_file.exists():  # the dev stack's submitter settings, KEY=VALUE lines
    for line in env_file.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.startswith("#"):
            os.environ.setdefault(name.strip(), value.strip().strip("'\""))

from orchestrator.client import SyncClient  # noqa: E402 - after the settings are in place

SERVER, CLIENTS = "server-1", ["client-1", "client-2"]  # the workers started above

client = SyncClient()
print([(w.name, w.role, w.workloads) for w in client.workers()])

# %% [markdown]
# Submit a federated-averaging job: one server and two clients on synthetic data.

# %%
handle = client.submit({
    "workload": "fedavg",
    "rounds": 3,
    "server": {"worker": SERVER, "config": {"seed": 3, "test_samples": 300}},
    "clients": [{"worker": name, "config": {"seed": 3, "samples": 200}} for name in CLIENTS],
    "labels": {"notebook": "yes"},
})
print(handle.id, handle.warnings)

# %%
for change in handle.watch():  # one line per committed change, until the job finishes
    job = change.job
    print(f"{job.status.value:<22} {job.phase.value:<10} round {job.round}/{job.spec.rounds}"
          f"  {change.reason or ''}")

# %%
job = handle.wait()
print(job.status.value, job.server.metrics)

# %%
rows = client.checkpoints(job.id)
print([(r["round"], r["key"], r["size"]) for r in rows])

# %%
files = client.download(job.id, "models", final_only=True)  # verified against the manifest
print(files)

# %%
import numpy as np  # noqa: E402

with np.load(files[0], allow_pickle=False) as model:
    print({name: model[name].shape for name in model.files})

# %% [markdown]
# Jobs by label, newest first, and why one ended the way it did.

# %%
page = client.list(labels={"notebook": "yes"}, limit=10)
print([(j.id, j.status.value) for j in page.jobs])

# %%
print("\n".join(client.why(job.id).lines()))

# %%
client.close()
