"""ActivityRegularization: Keras' identity layer whose outputs (its inputs) are penalised,
l1 * sum(|x|) + l2 * sum(x^2) over the batch size joining the loss (an activity_regularizer
of its own)."""

from __future__ import annotations

from .. import regularizers
from .base import Layer


class ActivityRegularization(Layer):
    """The identity, its inputs penalised by L1L2(l1, l2) in training and evaluation (the
    penalty over the batch size joins the loss, as Keras 3); trains layer by layer."""

    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        kwargs.pop("activity_regularizer", None)  # (a file's config may name its own)
        super().__init__(**kwargs)
        self.activity_regularizer = regularizers.L1L2(l1, l2)

    # l1 and l2 are the penalty's own (set either, or the regularizer: what trains is what
    # a file keeps)
    @property
    def l1(self):
        """The L1 factor of the penalty in use."""
        return getattr(self.activity_regularizer, "l1", 0.0)

    @l1.setter
    def l1(self, value):
        self.activity_regularizer = regularizers.L1L2(value, self.l2)

    @property
    def l2(self):
        """The L2 factor of the penalty in use."""
        return getattr(self.activity_regularizer, "l2", 0.0)

    @l2.setter
    def l2(self, value):
        self.activity_regularizer = regularizers.L1L2(self.l1, value)

    def forward(self, x, training=False, logits=False):
        return x

    def backward(self, dy, need_input_grad=True, logits=False):
        return dy if need_input_grad else None

    def get_config(self):
        config = super().get_config()
        config.pop("activity_regularizer", None)  # (l1 and l2 say it, as Keras')
        return {**config, "l1": self.l1, "l2": self.l2}
