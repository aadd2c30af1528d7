"""Objects that act like the NumPy array they hold (a weight, a metric variable, as Keras'
variables do): its arithmetic, comparisons and unary operators, giving NumPy values."""

from __future__ import annotations

import operator

_ARITHMETIC = ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul")


def add_array_operators(cls, values, comparisons=("lt", "le", "gt", "ge"), unary=("neg",),
                        assign=None):
    """Give cls the operators of the array `values(obj)`: arithmetic both ways, the named
    comparisons and unary operators. The other operand goes as given (a Python number keeps
    a float32 array float32). assign(obj, array): the in-place operators (+=, *=, ...) store
    the result through it and keep obj (else Python rebinds the name to the result)."""
    def binary(op, reflected):
        def method(self, other):
            a = values(self)
            return op(other, a) if reflected else op(a, other)
        return method

    def in_place(op):
        def method(self, other):
            assign(self, op(values(self), other))
            return self
        return method

    for name in _ARITHMETIC:
        setattr(cls, f"__{name}__", binary(getattr(operator, name), False))
        setattr(cls, f"__r{name}__", binary(getattr(operator, name), True))
        if assign is not None:
            setattr(cls, f"__i{name}__", in_place(getattr(operator, name)))
    for name in comparisons:
        setattr(cls, f"__{name}__", binary(getattr(operator, name), False))
    for name in unary:
        setattr(cls, f"__{name}__", lambda self, op=getattr(operator, name): op(values(self)))
