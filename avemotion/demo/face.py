"""Drawing the demo actor's face with OpenCV: head, hair, eyes, brows, nose and mouth whose shapes
follow the expression parameters, under a head pose (yaw and pitch shift the features across the
face, roll turns the whole head).
"""

from __future__ import annotations

import cv2
import numpy as np

from avemotion.demo.expressions import Speaker

AA = cv2.LINE_AA


def background(width: int, height: int, colour, rng: np.random.Generator) -> np.ndarray:
    """A static room: a vertical gradient of the speaker's colour with a little texture."""
    ramp = np.linspace(0.75, 1.15, height)[:, None, None]
    image = np.clip(np.asarray(colour, float)[None, None, :] * ramp, 0, 255)
    image = np.broadcast_to(image, (height, width, 3)).copy()
    image += rng.normal(0, 4, size=(height, width, 1))
    return np.clip(image, 0, 255).astype(np.uint8)


class FacePainter:
    """Renders frames of one speaker at a fixed head size and position."""

    def __init__(self, speaker: Speaker, width: int, height: int, rng: np.random.Generator):
        self.speaker = speaker
        self.backdrop = background(width, height, speaker.background, rng)
        self.half_height = 0.36 * height
        self.half_width = self.half_height / speaker.face_aspect
        self.centre = np.array([width / 2 + rng.uniform(-0.06, 0.06) * width, height * rng.uniform(0.5, 0.56)])

    def _points(self, local: np.ndarray, centre: np.ndarray, roll: float) -> np.ndarray:
        """Face-local points (x right, y down, in half-widths/half-heights) to image pixels."""
        scaled = local * np.array([self.half_width, self.half_height])
        c, s = np.cos(np.radians(roll)), np.sin(np.radians(roll))
        rotated = scaled @ np.array([[c, s], [-s, c]])
        return (rotated + centre).astype(np.float32)

    def draw(self, p: dict[str, float], drift: np.ndarray) -> np.ndarray:
        frame = self.backdrop.copy()
        skin, hair = self.speaker.skin, self.speaker.hair
        yaw, pitch, roll = np.radians(p["yaw"]), np.radians(p["pitch"]), p["roll"]
        centre = self.centre + drift
        # Features slide across the face with yaw (more for the nose, which stands out) and pitch.
        shift = np.array([0.55 * np.sin(yaw), -0.45 * np.sin(pitch)])
        to_px = lambda pts, depth=1.0: self._points(np.asarray(pts, float) + depth * shift, centre, roll)
        axes = lambda w, h: (max(1, int(w * self.half_width)), max(1, int(h * self.half_height)))
        to_int = lambda pts: np.round(pts).astype(np.int32)

        # neck and shoulders, hair behind the head, then the head
        neck = to_int(to_px([[-0.45, 0.6], [0.45, 0.6], [0.55, 1.6], [-0.55, 1.6]], 0))
        cv2.fillConvexPoly(frame, neck, tuple(int(v * 0.85) for v in skin), AA)
        head = tuple(to_int(to_px([[0, 0]], 0))[0])
        head_width = 1.0 - 0.12 * abs(np.sin(yaw))
        cv2.ellipse(frame, tuple(to_int(to_px([[0, -0.12]], 0))[0]), axes(1.08, 1.0), roll, 180, 360, hair, -1, AA)
        cv2.ellipse(frame, head, axes(head_width, 1.0), roll, 0, 360, skin, -1, AA)
        cv2.ellipse(frame, tuple(to_int(to_px([[0, -0.72]], 0.3))[0]), axes(0.95, 0.36), roll, 180, 360, hair, -1, AA)

        eye_height = 0.085 * np.clip(p["eye_open"], 0.03, 1.8)
        for side in (-1, 1):
            eye = to_px([[side * 0.36, -0.12]])[0]
            white = (245, 245, 240)
            cv2.ellipse(frame, tuple(to_int(eye)), axes(0.2, eye_height), roll, 0, 360, white, -1, AA)
            if p["eye_open"] > 0.25:
                iris = eye + np.array([0.08 * np.sin(yaw) * self.half_width, 0])
                radius = int(min(0.09 * self.half_width, eye_height * self.half_height + 1))
                cv2.circle(frame, tuple(to_int(iris)), max(1, radius), (60, 45, 35), -1, AA)
                cv2.circle(frame, tuple(to_int(iris)), max(1, radius // 2), (10, 10, 10), -1, AA)
            cv2.ellipse(frame, tuple(to_int(eye)), axes(0.2, eye_height), roll, 0, 360, (70, 50, 40), 2, AA)
            # Brows: raised by brow_raise; lowered brows also slant down towards the nose (knit).
            raise_ = 0.2 + 0.12 * p["brow_raise"]
            knit = min(0.0, p["brow_raise"]) * -0.08
            inner, outer = [side * 0.14, -0.12 - raise_ + knit], [side * 0.58, -0.12 - raise_ - 0.02]
            cv2.line(frame, tuple(to_int(to_px([inner])[0])), tuple(to_int(to_px([outer])[0])), hair, 5, AA)

        nose = to_int(to_px([[0.0, -0.05], [0.05, 0.22], [-0.06, 0.26]], 1.4))
        cv2.polylines(frame, [nose], False, tuple(int(v * 0.7) for v in skin), 2, AA)

        self._mouth(frame, p, to_px)
        return frame

    def _mouth(self, frame: np.ndarray, p: dict[str, float], to_px) -> None:
        """Lips as two curves: corners lift with smile, the lower lip drops with mouth_open."""
        width = 0.34 * (1 + 0.15 * p["smile"])
        corner_y = 0.5 - 0.1 * p["smile"]
        opening = 0.28 * p["mouth_open"]
        xs = np.linspace(-width, width, 15)
        bend = 1 - (xs / width) ** 2  # 0 at the corners, 1 in the middle
        upper = np.stack([xs, corner_y + 0.1 * p["smile"] * bend - 0.015 * bend], axis=1)
        lower = np.stack([xs, corner_y + 0.1 * p["smile"] * bend + (0.03 + opening) * bend], axis=1)
        outline = np.round(to_px(np.concatenate([upper, lower[::-1]]))).astype(np.int32)
        cv2.fillPoly(frame, [outline], (90, 20, 30) if p["mouth_open"] > 0.08 else (170, 70, 80), AA)
        cv2.polylines(frame, [outline], True, (150, 50, 60), 2, AA)


def empty_scene(width: int, height: int, colour, rng: np.random.Generator, frames: int) -> np.ndarray:
    """Frames of a room with furniture but nobody in it (the 'no face in any frame' defect)."""
    image = background(width, height, colour, rng)
    for _ in range(4):
        x, y = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        w, h = int(rng.integers(20, width // 3)), int(rng.integers(20, height // 2))
        cv2.rectangle(image, (x, y), (x + w, y + h), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return np.repeat(image[None], frames, axis=0)
