"""retrain-loop: refit on every batch, serve the rows the model is least sure of."""
__version__ = "0.1.0"
