"""Evaluation: metrics computed from predictions tables, and their summaries over folds."""
