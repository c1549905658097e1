"""Annotated previews of what the models are fed, for a few clips per dataset.

Each preview (results/report/previews/{dataset}/{clip_id}.png) shows:
- the T sampled frames (avemotion.layout.ClipArtifacts.frames) with the face box and the 68 landmarks
  of the face stage (ClipArtifacts.face_csv) at each sampled source frame, mapped
  into the frame crop exactly as the frames stage cut it (avemotion.face.crops: the smoothed face
  square or the aligned face; full frame: the letterbox);
- the mean AU intensities (``AU*_r``) over the frames with a face;
- the log-Mel and MFCC images (ClipArtifacts.mel_png, mfcc_png).
A face backend that writes no landmarks or no AU intensities gets the frames without marks or a
note instead of the bars.

Clips are chosen deterministically from the usable clips (the tabular shards): one per class, classes
in label-index order, the first clip id of each class; if there are fewer classes than previews, the
next clip ids fill up. The previews folder also holds previews.json listing the clips.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle
from PIL import Image

from avemotion.evaluate import plots
from avemotion.face.columns import LANDMARKS_2D
from avemotion.face.crops import crop_matrices, face_landmarks
from avemotion.fusion.shards import read_tabular_shards
from avemotion.io import write_json
from avemotion.layout import PREVIEWS_LISTING, ClipArtifacts
from avemotion.media.frame_crops import FACE_CROPS, letterbox_matrix

log = logging.getLogger(__name__)

DEFAULT_COUNT = 3


def choose_clips(clips: pd.DataFrame, count: int = DEFAULT_COUNT) -> pd.DataFrame:
    """Up to ``count`` rows of ``clips`` (clip_id, label, label_index): one per class where possible."""
    if clips.empty or count <= 0:
        return clips.iloc[:0]
    ordered = clips.sort_values(["label_index", "clip_id"], kind="stable")
    firsts = ordered.drop_duplicates("label_index").head(count)
    rest = clips[~clips["clip_id"].isin(firsts["clip_id"])].sort_values("clip_id", kind="stable")
    return pd.concat([firsts, rest.head(count - len(firsts))]).reset_index(drop=True)


# ---- geometry --------------------------------------------------------------------------------------


def crop_transforms(
    face: pd.DataFrame, source_frames, crop: str, size: int, margin: float, width=None, height=None, pixel_aspect: float = 1.0
) -> list[np.ndarray | None]:
    """Per sampled frame, the (2, 3) affine matrix mapping source pixels into the crop
    ((x_crop, y_crop) = matrix @ (x, y, 1)), the one the frames stage applied; None where unknown."""
    source_frames = np.asarray(source_frames, dtype=int)
    unknown = [None] * len(source_frames)
    if crop in FACE_CROPS:
        if not set(LANDMARKS_2D) <= set(face.columns) or len(face) == 0:
            return unknown
        return list(crop_matrices(face, crop, size, margin, pixel_aspect)[np.minimum(source_frames, len(face) - 1)])
    if crop == "full" and width and height and np.isfinite([width, height]).all():
        return [letterbox_matrix(width, height, size, pixel_aspect)] * len(source_frames)
    return unknown


def frame_annotations(face: pd.DataFrame, source_frames, crop: str, size: int, margin: float, width=None, height=None, pixel_aspect: float = 1.0):
    """Per sampled frame: (landmarks (68, 2) in crop pixels, face box (x0, y0, x1, y1)) or (None, None)."""
    transforms = crop_transforms(face, source_frames, crop, size, margin, width, height, pixel_aspect)
    # (N, 68, 2), NaN where a row has no face; none where the backend writes no landmarks
    landmarks = face_landmarks(face) if set(LANDMARKS_2D) <= set(face.columns) else None
    annotations = []
    for frame, transform in zip(np.asarray(source_frames, dtype=int), transforms):
        row = min(int(frame), len(face) - 1)
        points = landmarks[row] if landmarks is not None and row >= 0 else None
        if points is None or transform is None or not np.isfinite(points).all():
            annotations.append((None, None))
            continue
        mapped = points @ transform[:, :2].T + transform[:, 2]
        annotations.append((mapped, (*mapped.min(axis=0), *mapped.max(axis=0))))
    return annotations


def au_intensities(face: pd.DataFrame) -> pd.Series:
    """Mean of each ``AU*_r`` column over the frames with a face (empty where the backend has none)."""
    columns = [c for c in face.columns if c.startswith("AU") and c.endswith("_r")]
    ok = face["success"] == 1 if "success" in face else pd.Series(True, index=face.index)
    if not columns or not ok.any():
        return pd.Series(dtype=float)
    return face.loc[ok, columns].mean()


# ---- drawing ---------------------------------------------------------------------------------------


def preview_figure(clip: dict, frames: np.ndarray, annotations, aus: pd.Series, mel, mfcc):
    """The preview of one clip (see the module docstring)."""
    steps = len(frames)
    figure = plots.new_figure(max(8.0, 1.5 * steps), 5.6)
    top, bottom = figure.subfigures(2, 1, height_ratios=[1, 1.5])
    for index, axes in enumerate(top.subplots(1, steps, squeeze=False)[0]):
        axes.imshow(frames[index])
        points, box = annotations[index] if index < len(annotations) else (None, None)
        if box is not None:
            axes.add_patch(Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, color="yellow", linewidth=1))
            axes.scatter(points[:, 0], points[:, 1], s=1.5, c="lime")
        axes.set_xlim(-0.5, frames.shape[2] - 0.5)
        axes.set_ylim(frames.shape[1] - 0.5, -0.5)
        axes.set_title(f"frame {index + 1}", fontsize=7)
        axes.axis("off")
    au_axes, mel_axes, mfcc_axes = bottom.subplots(1, 3, width_ratios=[1, 1.4, 1.4])
    if len(aus):
        names = [name[: -len("_r")] for name in aus.index]
        au_axes.barh(names, aus.to_numpy(float), color="tab:orange")
        au_axes.set_xlim(0, 5)
        au_axes.invert_yaxis()
        au_axes.tick_params(axis="y", labelsize=6)
        au_axes.set_xlabel("mean intensity (0-5)", fontsize=8)
    else:
        au_axes.text(0.5, 0.5, "no AU intensities\nfrom this face backend", ha="center", va="center")
        au_axes.axis("off")
    au_axes.set_title("action units", fontsize=9)
    for axes, image, name in ((mel_axes, mel, "log-Mel"), (mfcc_axes, mfcc, "MFCC")):
        if image is None:
            axes.text(0.5, 0.5, f"no {name} image", ha="center", va="center")
            axes.axis("off")
        else:
            # stored with the lowest band in the bottom row: the extent puts band 0 at y = 0
            height, width = image.shape
            axes.imshow(image, cmap="magma", aspect="auto", interpolation="nearest", extent=(0, width, 0, height))
            axes.set_xlabel("frame (10 ms)", fontsize=8)
            axes.set_ylabel("band" if name == "log-Mel" else "coefficient", fontsize=8)
            axes.tick_params(labelsize=6)
        axes.set_title(name, fontsize=9)
    va = ""
    if clip.get("valence") is not None and np.isfinite(clip.get("valence", np.nan)):
        va = f", target valence {clip['valence']:+.2f} / arousal {clip['arousal']:+.2f} (label-derived)"
    figure.suptitle(f"{clip['dataset']} {clip['clip_id']}: {clip['label']} (speaker {clip['speaker']}){va}", fontsize=10)
    return figure


def _read_image(path: Path):
    if not path.is_file():
        return None
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


def render_preview(clip: dict, outdir, crop: str, source_frames, margin: float, width, height, path, pixel_aspect: float = 1.0) -> None:
    """Draw one clip's preview from its preprocessing artifacts under ``outdir`` (results/{dataset})."""
    files = ClipArtifacts(outdir, clip["clip_id"])
    frames = np.load(files.frames)
    face = pd.read_csv(files.face_csv) if files.face_csv.is_file() else pd.DataFrame({"success": []})
    if source_frames is None or len(source_frames) != len(frames):
        annotations = [(None, None)] * len(frames)
    else:
        annotations = frame_annotations(face, source_frames, crop, frames.shape[1], margin, width, height, pixel_aspect)
    figure = preview_figure(
        clip,
        frames,
        annotations,
        au_intensities(face),
        _read_image(files.mel_png),
        _read_image(files.mfcc_png),
    )
    plots.save_png(figure, path)


def _chunk_info(paths, columns) -> pd.DataFrame:
    """Per clip, the given columns of a stage's chunk tables (missing columns NaN)."""
    tables = [pd.read_parquet(path).reindex(columns=["clip_id", *columns]) for path in paths]
    tables = [table for table in tables if len(table)]
    if not tables:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="clip_id"))
    return pd.concat(tables).drop_duplicates("clip_id", keep="last").set_index("clip_id")


def _lookup(table: pd.DataFrame, clip_id: str, column: str):
    if clip_id not in table.index:
        return None
    value = table.at[clip_id, column]
    return None if value is None or (np.isscalar(value) and pd.isna(value)) else value


def dataset_previews(tabular_paths, frames_tables, face_tables, outdir, margin: float, folder, count: int = DEFAULT_COUNT) -> list[dict]:
    """Previews of up to ``count`` usable clips of one dataset into ``folder``, with previews.json.

    ``outdir`` is the dataset's results folder; ``frames_tables``/``face_tables`` are its frames and
    face chunk tables (sampled source frames and crop; source frame size)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    usable = read_tabular_shards(tabular_paths)
    chosen = choose_clips(usable, count) if len(usable) else []
    frames_info = _chunk_info(frames_tables, ["source_frames", "crop", "pixel_aspect"])
    face_info = _chunk_info(face_tables, ["width", "height"])
    written = []
    for clip in (chosen.to_dict("records") if len(chosen) else []):
        clip_id = clip["clip_id"]
        source = _lookup(frames_info, clip_id, "source_frames")
        render_preview(
            clip,
            outdir,
            _lookup(frames_info, clip_id, "crop"),
            None if source is None else list(source),
            margin,
            _lookup(face_info, clip_id, "width"),
            _lookup(face_info, clip_id, "height"),
            folder / f"{clip_id}.png",
            _lookup(frames_info, clip_id, "pixel_aspect") or 1.0,  # tables older than the column: square pixels
        )
        written.append({"clip_id": clip_id, "label": clip["label"], "speaker": str(clip["speaker"]), "png": f"{clip_id}.png"})
        log.info("preview of %s (%s)", clip_id, clip["label"])
    write_json({"clips": written}, folder / PREVIEWS_LISTING)
    return written
