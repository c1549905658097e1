"""avemotion: audio-visual emotion recognition workflow library."""

__version__ = "0.1.0"
