"""The published recipes' training augmentation beyond the defaults: the random resized crop's area
range (training.crop_scale) and random erasing (training.random_erasing), as VideoMAE fine-tunes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

tf = pytest.importorskip("tensorflow")

from snakemake.utils import validate  # noqa: E402

from avemotion.config import SCHEMA_PATH, ConfigError  # noqa: E402
from avemotion.fusion import augment as A  # noqa: E402
from avemotion.fusion import dataset as D  # noqa: E402
from avemotion.fusion import render  # noqa: E402
from avemotion.presets import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from avemotion.train.experiment import augmentation_of, run_experiment_fold  # noqa: E402
from avemotion.train.settings import experiment_settings, model_settings  # noqa: E402
from conftest import demo_settings  # noqa: E402
from test_fusion_dataset import LABELS, make_clip, options, pattern_frames, write_shard  # noqa: E402
from test_train_experiment import learnable_shards, settings_for  # noqa: E402

SIDE = 160


def boxes(probability: float, draws: int = 2000) -> np.ndarray:
    return np.stack([A.erase_box(tf.constant([i, 5], tf.int64), probability, SIDE).numpy() for i in range(draws)])


def test_erasing_boxes_follow_timm_random_erasing():
    drawn = boxes(0.25)
    erased = drawn[drawn[:, 2] > 0]
    # A quarter of the clips (binomial sd on 2000 draws: 0.01).
    assert len(erased) / len(drawn) == pytest.approx(0.25, abs=0.03)
    top, left, height, width = erased.T
    assert erased.min() >= 0 and np.all(top + height <= SIDE) and np.all(left + width <= SIDE)
    area, aspect = height * width / SIDE**2, height / width
    # 2-33 % of the frame (up to rounding), aspect 0.3-3.3; uniform area: mean about 0.18.
    assert 0.018 <= area.min() and area.max() <= 0.34 and area.mean() == pytest.approx(0.177, abs=0.015)
    assert 0.28 <= aspect.min() and aspect.max() <= 3.6
    assert not boxes(0.0, 200).any()
    assert (boxes(1.0, 200)[:, 2] > 0).all()


def test_erased_boxes_hold_standardised_noise_and_nothing_else_changes():
    frames = tf.fill([3, 4, SIDE, SIDE, 3], 0.5)
    drawn = tf.constant([[10, 20, 60, 40], [0, 0, 0, 0], [100, 0, 50, 159]], tf.float32)
    seeds = tf.constant([[1, 2], [3, 4], [5, 6]], tf.int64)
    erase = render.compiled(render.erase_boxes)
    out = erase(frames, drawn, seeds, IMAGENET_MEAN, IMAGENET_STD).numpy()
    np.testing.assert_array_equal(out, erase(frames, drawn, seeds, IMAGENET_MEAN, IMAGENET_STD).numpy())  # from the seeds alone
    np.testing.assert_array_equal(out[1], 0.5)  # not erased
    for clip, (top, left, height, width) in ((0, (10, 20, 60, 40)), (2, (100, 0, 50, 159))):
        inside = np.zeros((SIDE, SIDE), bool)
        inside[top : top + height, left : left + width] = True
        np.testing.assert_array_equal(out[clip][:, ~inside], 0.5)
        noise = out[clip][:, inside]  # (frames, pixels, channels)
        assert (noise == 0.5).mean() < 1e-3
        # After the backbone's standardisation, N(0, 1) per channel, new noise in every frame.
        standard = (noise - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
        np.testing.assert_allclose(standard.mean(axis=(0, 1)), 0, atol=0.05)
        np.testing.assert_allclose(standard.std(axis=(0, 1)), 1, atol=0.05)
        assert not np.allclose(noise[0], noise[1])


def first_batch(path, augmentation: A.Augmentation, augment: bool = True) -> np.ndarray:
    training = D.Training(seed=3, augment=augment, augmentation=augmentation)
    inputs, _ = next(iter(D.make_dataset([path], **options(image_size=SIDE, training=training, batch_size=4))))
    return inputs["frames"].numpy()


def test_a_training_stream_erases_one_box_of_every_frame_and_keeps_its_crops(tmp_path):
    clips = [make_clip(f"c{i}", LABELS[i % 6], frames=pattern_frames(size=SIDE)) for i in range(8)]
    path = write_shard(tmp_path / "0.tfrecord", clips)
    plain = first_batch(path, A.Augmentation())
    erased = first_batch(path, A.Augmentation(erasing=1.0))
    assert plain.min() >= 0 and plain.max() <= 1
    for clip in range(len(plain)):
        changed = (plain[clip] != erased[clip]).any(axis=-1)  # (T, S, S)
        assert changed.any()
        # The same box in every frame, a rectangle; the rest the same crops, flips and jitter.
        assert (changed == changed[0]).all()
        rows, columns = np.flatnonzero(changed[0].any(axis=1)), np.flatnonzero(changed[0].any(axis=0))
        assert changed[0][rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1].all()
        assert changed[0].sum() == len(rows) * len(columns)
    # Without augmentation the clips are trained on as they are, erasing or not.
    as_they_are = first_batch(path, A.Augmentation(erasing=1.0), augment=False)
    np.testing.assert_allclose(as_they_are, np.broadcast_to(pattern_frames(size=SIDE) / 255, as_they_are.shape), atol=4 / 255)


def test_crop_scale_sets_the_random_resized_crops_area():
    windows = np.stack([A.video_params(tf.constant([i, 7], tf.int64), SIDE, SIDE, (0.08, 1.0))["window"].numpy() for i in range(300)])
    area = windows[:, 2] * windows[:, 3] / SIDE**2
    # Uniform in [0.08, 1], less the large draws too wide or tall for the frame, which are redrawn.
    assert area.min() < 0.1 and area.max() > 0.9 and area.mean() == pytest.approx(0.47, abs=0.05)
    with pytest.raises(ValueError, match="crop_scale"):
        A.Augmentation(crop_scale=(0.9, 0.5))


def test_augmentation_takes_area_fractions_and_an_erasing_probability_only():
    """A crop of 0 % of the frame or of more than all of it, and an erasing probability outside
    [0, 1], are refused; the ends themselves are allowed."""
    for crop_scale in ((0.0, 1.0), (0.5, 1.2)):
        with pytest.raises(ValueError, match="crop_scale must be two area fractions"):
            A.Augmentation(crop_scale=crop_scale)
    for erasing in (-0.1, 1.5):
        with pytest.raises(ValueError, match="erasing must be a probability"):
            A.Augmentation(erasing=erasing)
    assert A.Augmentation(crop_scale=(1.0, 1.0), erasing=1.0).erasing == 1.0


def test_erased_noise_follows_the_models_own_input_standardisation():
    """A backbone with its own image mean and std (pretrained weights' config, CLIP's): the erased
    pixels are noise that its standardisation makes N(0, 1), not ImageNet's."""
    backbone = SimpleNamespace(image_mean=(0.5, 0.5, 0.5), image_std=(0.25, 0.25, 0.25))
    augmentation = augmentation_of({"random_erasing": 0.25}, backbone)
    assert (augmentation.pixel_mean, augmentation.pixel_std, augmentation.erasing) == ((0.5,) * 3, (0.25,) * 3, 0.25)
    assert (augmentation_of({}).pixel_mean, augmentation_of({}).pixel_std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_config_keys_reach_the_stream_and_retrain_nothing_at_their_defaults():
    config = demo_settings()
    config["training"]["augment"] = True  # the demo trains without
    validate(config, schema=str(SCHEMA_PATH))  # the schema's defaults filled in, as the Snakefile does
    assert config["training"]["crop_scale"] == [0.6, 1.0] and config["training"]["random_erasing"] == 0
    name = config["experiments"][0]["name"]
    before = model_settings(config, name)["training"]
    assert "crop_scale" not in before and "random_erasing" not in before  # models trained before these keys stay current
    config["training"].update(crop_scale=[0.08, 1.0], random_erasing=0.25)
    training = experiment_settings(config, name)["training"]
    assert augmentation_of(training) == A.Augmentation(crop_scale=(0.08, 1.0), erasing=0.25)
    assert model_settings(config, name)["training"]["random_erasing"] == 0.25
    # Without augmentation these keys change nothing the job computes: no retraining for them.
    config["training"]["augment"] = False
    assert not {"crop_scale", "random_erasing"} & set(model_settings(config, name)["training"])
    # A swapped range names the key where it was written.
    config["training"]["crop_scale"] = [0.9, 0.5]
    with pytest.raises(ConfigError, match=r"config: training\.crop_scale: \[0\.9, 0\.5\] has its low end above"):
        experiment_settings(config, name)
    config["experiments"][0]["training"] = {**(config["experiments"][0].get("training") or {}), "crop_scale": [0.7, 0.2]}
    with pytest.raises(ConfigError, match=rf"config: experiments\.{name}\.training\.crop_scale: \[0\.7, 0\.2\]"):
        experiment_settings(config, name)


def test_a_fold_trains_with_the_recipes_augmentation(tmp_path):
    tabular, tfrecord, _ = learnable_shards(tmp_path / "results")
    settings = settings_for("early", epochs=2)
    settings["training"].update(crop_scale=[0.08, 1.0], random_erasing=0.5, rand_augment={"ops": 4, "magnitude": 7, "magnitude_std": 0.5})
    out = tmp_path / "fold_1"
    run_experiment_fold(settings, tabular, tfrecord, 1, out)
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 2 and np.isfinite(history["loss"]).all()
