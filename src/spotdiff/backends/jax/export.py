"""JAX's export formats for a trained digits model: jax.export (serialized StableHLO) and a TF
SavedModel through jax2tf; each reloaded and checked for parity. Run in the `spotdiff export`
child (spotdiff.serve.export_child)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from spotdiff.backends.artifacts import parity, size_bytes, target
from spotdiff.backends.tensorflow.export import saved_model_row, tf_signature
from spotdiff.tasks.digits.models import FLATTEN_CHW


def export_digits(params, neutral, images, root: Path, version: int, formats: list[str]):
    import jax
    from jax import export

    from spotdiff.backends.jax import weights
    from spotdiff.tasks.digits import jax_impl

    model = jax_impl.build_model(params, None, "random", dropout=False)
    weights.load_neutral(model, neutral, "fc1", FLATTEN_CHW[params.model])
    model.eval()
    x = images[..., None]
    reference = np.asarray(model(x))
    if "jax" in formats:
        folder = target(root, "digits-jax-export", version)
        start = time.perf_counter()
        (batch,) = export.symbolic_shape("b")
        spec = jax.ShapeDtypeStruct((batch, 28, 28, 1), np.float32)
        exported = export.export(jax.jit(lambda images: model(images)))(spec)
        (folder / "model.jax").write_bytes(exported.serialize())
        export_s = time.perf_counter() - start
        out = np.asarray(export.deserialize((folder / "model.jax").read_bytes()).call(x))
        yield {
            "name": "digits-jax-export",
            "format": "jax",
            "path": str(folder / "model.jax"),
            "export_s": export_s,
            "size_bytes": size_bytes(folder),
            **parity(reference, out),
        }

    if "jax2tf" in formats:
        yield _export_jax2tf(model, reference, x, root, version)


def _export_jax2tf(model, reference: np.ndarray, x: np.ndarray, root: Path, version: int) -> dict:
    """A TF SavedModel of the JAX forward through jax2tf (StableHLO inside an XlaCallModule op)."""
    import tensorflow as tf
    from jax.experimental import jax2tf

    folder = target(root, "digits-jax-savedmodel", version)
    start = time.perf_counter()
    # the weights travel as constants: fine at this size (jax2tf suggests tf.Variables past ~2 GB)
    forward = jax2tf.convert(
        lambda images: model(images), polymorphic_shapes=["(b, 28, 28, 1)"], with_gradient=False
    )
    module = tf.Module()
    module.serve = tf_signature(lambda images: {"logits": forward(images)})
    return saved_model_row(module, folder, "jax2tf", x, reference, start)
