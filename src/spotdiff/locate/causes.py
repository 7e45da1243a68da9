"""Candidate causes of a divergence: the documented default differences `where` can align.

Each cause is one alignment, `{key: value}`, passed to every framework's `record_steps` in a rerun;
an implementation honours the keys that apply to it (and says so in its answer). A cause is named
only when its rerun removes the divergence (`locate.run`). The facts behind each entry are in
docs/defaults.md and the defaults audit's components (`component`), which measures them in
isolation; this catalogue says which layer kinds or optimiser each one can touch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cause:
    """One documented difference and how to align it in a rerun."""

    key: str  # the alignment key every record_steps understands (or ignores when not its concern)
    value: Any  # the aligned setting
    label: str  # how the report names it
    what_differs: str  # the documented difference, for the porting engineer
    kinds: tuple[str, ...] = ()  # layer kinds it can touch (forward / backward divergence)
    optimizers: tuple[str, ...] = ()  # optimisers it can touch (update divergence)
    component: str = ""  # the defaults-audit component that measures it (`spotdiff defaults X`)

    @property
    def align(self) -> dict[str, Any]:
        """The alignment passed to record_steps (a combination of causes carries all of theirs)."""
        return dict(self.value) if isinstance(self.value, dict) else {self.key: self.value}


CAUSES: tuple[Cause, ...] = (
    Cause("rmsprop_eps", "inside", "RMSprop epsilon placement",
          "PyTorch adds eps outside the square root, g/(sqrt(v)+eps); Keras and Optax inside, "
          "g/sqrt(v+eps)", optimizers=("rmsprop",), component="rmsprop"),
    Cause("adam_eps", "hat", "Adam epsilon-hat",
          "Keras adds eps to sqrt(v) before bias correction (epsilon-hat); PyTorch and Optax to "
          "sqrt(v_hat)", optimizers=("adam",), component="adam"),
    Cause("adamw_eps", 1e-8, "AdamW epsilon",
          "PyTorch and Optax add eps 1e-8 to sqrt(v_hat); Keras adds 1e-7 to sqrt(v) before the bias "
          "correction (epsilon-hat: in effect eps / sqrt(1 - beta_2^t))", optimizers=("adamw",)),
    Cause("adam_eps_value", 1e-7, "Adam epsilon default",
          "PyTorch and Optax default eps to 1e-8, Keras to 1e-7", optimizers=("adam",), component="adam"),
    Cause("sparse_grads", "dense", "Keras sparse-gradient update",
          "Keras 3 on TensorFlow applies an embedding's tf.IndexedSlices gradient occurrence by "
          "occurrence: a row repeated in the batch adds sum(g_i^2) to Adam's second moment where "
          "PyTorch and Optax (dense gradients) add (sum g_i)^2; densify the gradient to align",
          optimizers=("adam",)),  # RMSprop and Adagrad square it too; only Adam is measured here
    Cause("sgd_momentum", "torch", "SGD momentum form",
          "PyTorch v = mu v + g, p -= lr v; Keras v = mu v - lr g, p += v (equal for a constant lr)",
          optimizers=("sgd",), component="sgd"),
    Cause("flatten_order", "chw", "flatten order",
          "PyTorch flattens conv features channel-major (C,H,W); Keras and Flax (H,W,C): the first "
          "dense layer's rows must be permuted", kinds=("flatten", "dense")),
    Cause("same_padding", "tf", "stride-2 SAME padding",
          "TensorFlow and Flax 'SAME' put the extra row/column bottom/right; a symmetric explicit "
          "padding in PyTorch shifts the output by one pixel", kinds=("conv2d",), component="conv2d"),
    Cause("batchnorm_eps", 1e-5, "BatchNorm epsilon",
          "PyTorch 1e-5, Keras 1e-3, Flax 1e-5", kinds=("batchnorm",), component="batchnorm"),
    Cause("batchnorm_momentum", "new-weight-0.1", "BatchNorm momentum convention",
          "PyTorch momentum 0.1 weighs the new batch statistic; Keras and Flax 0.99 weigh the old "
          "running value (torch m = 1 - keras m)", kinds=("batchnorm",), component="batchnorm"),
    Cause("layernorm_eps", 1e-5, "LayerNorm epsilon",
          "PyTorch 1e-5, Keras 1e-3, Flax 1e-6", kinds=("layernorm",)),
    Cause("gru_reset_after", True, "GRU reset_after",
          "Keras reset_after=True (PyTorch's form: reset applied after the recurrent matmul) vs "
          "reset_after=False (before it)", kinds=("gru",), component="gru"),
    Cause("gelu", "exact", "GELU approximation",
          "torch.nn.GELU and Keras use exact erf; jax.nn.gelu the tanh approximation",
          kinds=("gelu",)),
)


def candidates(kinds: set[str], optimizer: str | None, phase: str) -> list[Cause]:
    """Causes that can touch what diverged: the optimiser for an update divergence (and the layers
    whose running statistics are updated there), the layer kinds otherwise."""
    found = []
    for cause in CAUSES:
        if phase == "update" and optimizer in cause.optimizers:
            found.append(cause)
        elif cause.kinds and kinds & set(cause.kinds):
            found.append(cause)
    return found
