"""Evaluation: metrics (avemotion.metrics) recomputed from predictions tables, their summaries over
folds, baselines, plots and the report."""
