"""Test-only Keras 3 models for `spotdiff port` (tests/test_port.py): faithful and planted ports."""

import keras


def mlp(epsilon: float = 1e-5):
    """The torch MLP; Keras' LayerNormalization eps defaults to 1e-3, PyTorch's to 1e-5."""
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, name="fc1"),
            keras.layers.LayerNormalization(epsilon=epsilon, name="ln"),
            keras.layers.ReLU(name="relu"),
            keras.layers.Dense(3, name="fc2"),
        ]
    )


def mlp_default_eps():
    """The classic porting bug: LayerNormalization left at Keras' default epsilon (1e-3)."""
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, name="fc1"),
            keras.layers.LayerNormalization(name="ln"),
            keras.layers.ReLU(name="relu"),
            keras.layers.Dense(3, name="fc2"),
        ]
    )


def convnet():
    """The torch ConvNet channels-last: BatchNorm eps and momentum (1 - 0.1) set to PyTorch's."""
    return keras.Sequential(
        [
            keras.Input((4, 4, 2)),
            keras.layers.Conv2D(4, 3, padding="same", name="conv"),
            keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="bn"),
            keras.layers.ReLU(name="relu"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(3, name="fc"),
        ]
    )
