"""Per-clip media features for the preprocess stage: audio spectrograms and their images."""
