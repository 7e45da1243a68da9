"""spotdiff: run one deep-learning experiment in PyTorch, TensorFlow and JAX and show where they differ."""

__version__ = "0.1.0"
