"""Runs: the `hexlab run` job, its run directory and the aggregation into votes and metrics."""
