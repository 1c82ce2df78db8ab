"""A small Flower App: logistic regression with NumPy on synthetic data (no downloads)."""
