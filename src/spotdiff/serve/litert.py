"""The TFLite runtime: LiteRT's interpreter (`ai-edge-litert`, Google's maintained successor of
`tf.lite.Interpreter`, which TensorFlow marks deprecated), else TensorFlow's own. Shared by the
server's loader (models.py), the mobile timings (mobile.py) and TensorFlow's export check."""

from __future__ import annotations

from importlib import metadata


def interpreter_class():
    """LiteRT's interpreter (ai-edge-litert), else TensorFlow's deprecated tf.lite one; and its name."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, f"ai-edge-litert {metadata.version('ai-edge-litert')}"
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, f"tf.lite.Interpreter (tensorflow {tf.__version__})"
