"""Training building blocks: losses (label-smoothed cross-entropy, CCC, the multi-task sum) and the
fine-tuning optimizer (AdamW with layer-wise lr decay, warm-up + cosine schedule).

The modules import Keras, so import them directly (``avemotion.train.losses``,
``avemotion.train.optimizer``); this package file stays free of heavy imports.
"""
