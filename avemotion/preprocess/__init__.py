"""Preprocessing: per-clip audio, spectrograms, face features and sampled frames, run per chunk."""
