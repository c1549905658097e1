"""Multi-view testing: each evaluated clip is seen in several spatial views and the model's outputs
are averaged over them (avemotion.model.outputs.raw_outputs), for evaluation and ``avemotion
predict`` alike. HiCMAE and MAE-DFER test this way (views averaged; the published recipes add
temporal views: raw_outputs averages each spatial view over the temporal windows the shards hold of
a clip, avemotion.fusion.schema, or training.test_windows of them).

Views of a clip's stored square frames, in order (``spatial_views`` takes the first ones): the
frames as they are; mirrored (the face features mirrored with them, as training's flips do); the
centre crop of CENTRE_CROP of the side, resized back (a face crop a little closer, as training's
random resized crops show it); and that crop mirrored. The audio is the same in every view.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from avemotion.fusion.augment import mirror_face

CENTRE_CROP = 0.875  # the usual test-time centre crop (224 of 256)
MAX_VIEWS = 4


@dataclass(frozen=True)
class View:
    crop: float = 1.0  # side of the centred crop, as a fraction of the frame's
    flip: bool = False


VIEWS = (View(), View(flip=True), View(crop=CENTRE_CROP), View(crop=CENTRE_CROP, flip=True))


def evaluation_views(spatial_views: int) -> tuple[View, ...]:
    """The first ``spatial_views`` views (1 to MAX_VIEWS)."""
    if not 1 <= int(spatial_views) <= MAX_VIEWS:
        raise ValueError(f"spatial views must be 1 to {MAX_VIEWS}, got {spatial_views}")
    return VIEWS[: int(spatial_views)]


def apply_view(example: dict, view: View, image_size: int) -> dict:
    """``example`` with sample_frames' parameters (avemotion.fusion.render) that render ``view`` of
    its uint8 frames of ``image_size``, in [0, 1], and its face sequence mirrored with a flip."""
    side = float(round(image_size * view.crop))
    start = (image_size - side) / 2
    example = dict(example)
    example.update(
        _window=tf.constant([start, start, side, side]),
        _flip=tf.constant(view.flip),
        _scale=tf.constant(1 / 255),
        _offset=tf.constant(0.0),
    )
    if view.flip:
        example["face_sequence"] = mirror_face(example["face_sequence"], tf.constant(True))
    return example
