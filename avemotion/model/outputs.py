"""A trained fusion model's outputs for clips of fused TFRecord shards: what training's evaluation
and ``avemotion predict`` both run, so their predictions of the same clips agree. Imports
TensorFlow (the input pipeline)."""

from __future__ import annotations

import numpy as np

from avemotion.fusion.dataset import evaluation_windows, make_dataset
from avemotion.fusion.records import shard_windows
from avemotion.fusion.views import View, evaluation_views
from avemotion.job_params import DEFAULT_TEST_VIEWS, DEFAULT_TEST_WINDOWS
from avemotion.model.fusion import model_input_names
from avemotion.model.speech_input import pipeline_inputs, with_speech_features


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def raw_outputs(model, settings: dict, tfrecord_paths, clip_ids, unlabelled: bool = False) -> tuple[list[str], dict[str, np.ndarray]]:
    """Clip ids and every model output (emotion outputs as probabilities) for the given clips
    (``unlabelled``: also those without a label of the model, as new clips are), averaged over the
    model's test views: each of the temporal windows the shards hold of a clip (1 unless fused with
    several, avemotion.fusion.schema; ``training.test_windows`` of them, evenly spread, where set) in
    each of the spatial views (``training.test_views``, avemotion.fusion.views; 1: the clips as they
    are)."""
    ids, total = None, {}
    views = evaluation_views(settings["training"].get("test_views", DEFAULT_TEST_VIEWS))
    windows = shard_windows(tfrecord_paths, settings["num_frames"])
    tested = evaluation_windows(windows, settings["training"].get("test_windows", DEFAULT_TEST_WINDOWS))
    for window in tested:
        for view in views:
            view_ids, outputs = view_outputs(model, settings, tfrecord_paths, clip_ids, unlabelled, view, window if windows > 1 else None)
            if ids is not None and view_ids != ids:
                raise RuntimeError("the evaluation stream gave the clips in another order for another view")
            ids = view_ids
            for name, value in outputs.items():
                total[name] = total.get(name, 0.0) + value
    missing = sorted(set(clip_ids or ()) - set(ids or ()))
    if missing:  # scored on fewer clips than the split (and the baselines, which read it) holds
        raise ValueError(
            f"{len(missing)} of the {len(set(clip_ids))} clips asked for are not in the TFRecord shards (first: {missing[0]}): "
            "they disagree with the tabular shards the clips were chosen from; fuse them again (snakemake fuse --forcerun fuse_chunk)"
        )
    return ids, {name: value / (len(tested) * len(views)) for name, value in total.items()}


def view_outputs(
    model, settings: dict, tfrecord_paths, clip_ids, unlabelled: bool, view: View, window: int | None = None
) -> tuple[list[str], dict[str, np.ndarray]]:
    """raw_outputs of one test view (of temporal ``window``, when the shards hold several)."""
    names = model_input_names(model)
    dataset = make_dataset(
        tfrecord_paths,
        num_frames=settings["num_frames"],
        image_size=settings["image_size"],
        label_names=settings["labels"],
        batch_size=settings["training"]["batch_size"],
        clip_ids=clip_ids,
        with_ids=True,
        inputs=pipeline_inputs(names),
        unlabelled=unlabelled,
        view=view,
        window=window,
    )
    dataset = with_speech_features(dataset, model)  # a Whisper branch's features, from the clips' audio
    ids, collected = [], {}
    for inputs, _, meta in dataset:
        ids.extend(value.decode() for value in meta["clip_id"].numpy())
        # As NumPy: on the JAX backend a compiled predict step takes arrays, not TensorFlow tensors.
        for name, value in model.predict_on_batch({key: inputs[key].numpy() for key in names}).items():
            value = np.asarray(value, dtype=np.float64)
            collected.setdefault(name, []).append(softmax(value) if name.endswith("emotion") else value)
    return ids, {name: np.concatenate(parts) for name, parts in collected.items()}
