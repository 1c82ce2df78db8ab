"""Worker agents and built-in workloads."""
