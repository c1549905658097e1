"""Cross-corpus testing: a model trained on one corpus predicts every clip of another.

Only the labels both corpora share are scored: the model's probabilities for those classes are
renormalised and the clips of other classes are left out (their count is in metrics.json).
"""

from __future__ import annotations

import logging
from pathlib import Path

from avemotion.io import write_json, write_parquet
from avemotion.layout import METRICS_FILE, PREDICTIONS_FILE
from avemotion.metrics import evaluate_predictions
from avemotion.model.bundle import TrainedModel
from avemotion.model.outputs import raw_outputs
from avemotion.model.runtime import configure_threads
from avemotion.train.experiment import branch_metrics, experiment_clips
from avemotion.train.predict import predictions_table, restrict_to
from avemotion.train.settings import common_labels

log = logging.getLogger(__name__)


def predict_other_corpus(model_dir, tabular_paths, tfrecord_paths, dataset: str, outdir, threads: int | None = None) -> dict:
    """Predictions and metrics of ``model_dir``'s model on all clips of ``dataset`` in the shared labels."""
    model_dir, outdir = Path(model_dir), Path(outdir)
    configure_threads(threads)
    trained = TrainedModel.load(model_dir)
    settings, labels = trained.settings, trained.labels
    kept = common_labels(labels, dataset)
    clips, outside_by_dataset = experiment_clips(tabular_paths, kept)
    outside = sum(outside_by_dataset.values())
    log.info("%s on %s: %d clips in the shared labels %s, %d outside", settings["name"], dataset, len(clips), kept, outside)
    ids, outputs = raw_outputs(trained.network(), settings, tfrecord_paths, list(clips["clip_id"]))
    outputs = restrict_to(outputs, labels, kept)
    predictions = predictions_table(ids, trained.fused(outputs), clips, kept, outputs)
    outdir.mkdir(parents=True, exist_ok=True)
    write_parquet(predictions, outdir / PREDICTIONS_FILE)
    metrics = {
        "experiment": settings["name"],
        "trained_on": settings["datasets"],
        "tested_on": dataset,
        "labels": kept,
        "outside_label_set": outside,
        **evaluate_predictions(predictions, kept),
        "branches": branch_metrics(predictions, kept),
    }
    write_json(metrics, outdir / METRICS_FILE)
    return metrics
