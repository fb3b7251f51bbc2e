"""MLflow: the store and its health, runs that always end, tags, plots, the ui/server commands."""
