"""Isolated participants: each runs in a child process of its own, supervised by its worker.

:mod:`~workers.isolation.supervisor` (the agent's side: start the child, answer its requests
with the participant's real context, forward stops and membership, SIGTERM then SIGKILL),
:mod:`workers.child` (the child's entry point), :mod:`~workers.isolation.child_context` (the
SDK context inside the child), :mod:`~workers.isolation.protocol` (the channel: line-delimited
JSON over a socket pair, never pickle), :mod:`~workers.isolation.requests` (what each request
does) and :mod:`~workers.isolation.logs` (the participant's captured output).
"""
