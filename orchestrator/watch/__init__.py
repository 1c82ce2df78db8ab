"""The watcher: what a job looks like (``model``), how it is drawn (``render``), and how it is
followed live (``follow``: the daemon's update streams plus MongoDB)."""
