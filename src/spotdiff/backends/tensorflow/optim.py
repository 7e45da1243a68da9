"""Optimiser forms Keras has no switch for (used by `spotdiff where` reruns)."""

from __future__ import annotations

import tensorflow as tf


class DenseGradients:
    """A Keras optimiser that receives every gradient dense. Keras 3 (TensorFlow backend) applies a
    tf.IndexedSlices gradient (from a gather: an embedding lookup) slice by slice, so a non-linear
    update squares each occurrence of a repeated row before they are summed: Adam's second moment
    gets sum(g_i^2) where PyTorch and Optax, whose gradients are dense, get (sum g_i)^2."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def apply_gradients(self, grads_and_vars):
        return self.optimizer.apply_gradients(
            [(tf.convert_to_tensor(g), v) for g, v in grads_and_vars])


def aligned(optimizer, align: dict):
    """`optimizer`, or with align {"sparse_grads": "dense"} wrapped in DenseGradients."""
    return DenseGradients(optimizer) if align.get("sparse_grads") == "dense" else optimizer
