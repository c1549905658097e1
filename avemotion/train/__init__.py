"""Training: an experiment's settings (settings, plan), its speaker-independent splits (splits), the
networks' losses and fine-tuning optimizer (losses, optimizer), fitting and resuming (fitting), the
devices and backend a job computes on (devices, backend, compilation_cache), late-fusion weights
(ensemble), a trained model's predictions of a split and of another corpus (predict, cross_corpus);
experiment runs one training job.

The modules import Keras where they need it, so import them directly (``avemotion.train.losses``);
this package file stays free of heavy imports.
"""
