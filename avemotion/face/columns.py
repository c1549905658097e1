"""OpenFace 2.x FeatureExtraction CSV columns, in the order OpenFace writes them.

``-aus -pose -gaze`` gives 334 columns; every output gives 714. A backend that cannot estimate a
column leaves it out rather than writing zeros (see :func:`ordered_columns`).
"""

from __future__ import annotations

META = ["frame", "face_id", "timestamp", "confidence", "success"]
GAZE = ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y"]
EYE_LANDMARKS = [f"eye_lmk_{axis}_{i}" for axis in ("x", "y", "X", "Y", "Z") for i in range(56)]
POSE = ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
ROTATION = POSE[3:]  # pitch, yaw, roll in radians
LANDMARKS_2D = [f"{axis}_{i}" for axis in ("x", "y") for i in range(68)]
LANDMARKS_3D = [f"{axis}_{i}" for axis in ("X", "Y", "Z") for i in range(68)]
PDM = ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"] + [f"p_{i}" for i in range(34)]

AU_INTENSITY = ["01", "02", "04", "05", "06", "07", "09", "10", "12", "14", "15", "17", "20", "23", "25", "26", "45"]
AU_PRESENCE = AU_INTENSITY[:-1] + ["28", "45"]
AUS_R = [f"AU{au}_r" for au in AU_INTENSITY]
AUS_C = [f"AU{au}_c" for au in AU_PRESENCE]

ALL_COLUMNS = META + GAZE + EYE_LANDMARKS + POSE + LANDMARKS_2D + LANDMARKS_3D + PDM + AUS_R + AUS_C
# What `FeatureExtraction -aus -pose -gaze -2Dfp` writes, the selection this project asks OpenFace for.
REQUESTED_COLUMNS = META + GAZE + EYE_LANDMARKS + POSE + LANDMARKS_2D + AUS_R + AUS_C


def ordered_columns(present) -> list[str]:
    """The given columns in OpenFace's order (a backend writes only what it estimates)."""
    present = set(present)
    unknown = present - set(ALL_COLUMNS)
    if unknown:
        raise ValueError(f"not OpenFace columns: {sorted(unknown)}")
    return [c for c in ALL_COLUMNS if c in present]
