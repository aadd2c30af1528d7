"""ONNX export: `pynn.onnx.export(model, "m.onnx")` for Dense, Activation (and ReLU & co.),
PReLU, Flatten, Reshape, Rescaling, Identity, Dropout, GaussianNoise, GaussianDropout,
AlphaDropout and ActivityRegularization (left out: the identity at inference), BatchNormalization
(inference mode), LayerNormalization, RMSNormalization and Normalization (invert=True
too), every activation included. Layers
are matched by exact class: a subclass of one of these, or any other layer, raises
ValueError.

Needs the optional `onnx` package (pip install 'pynn[onnx]'); onnxruntime runs the result.
The file declares the lowest opset and IR version the model needs (opset 13; 20 with gelu,
whose tanh approximation arrived there), so older runtimes load it too.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .layers import (ACTIVATION_LAYERS, ActivityRegularization, AlphaDropout,
                     BatchNormalization, Dense, Dropout,
                     Flatten, GaussianDropout, GaussianNoise, Identity, InputLayer,
                     LayerNormalization, Normalization, PReLU, Rescaling, Reshape,
                     RMSNormalization)


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("ONNX export needs the onnx package: pip install 'pynn[onnx]'") from exc
    return onnx


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805


class _Graph:
    """Nodes for one activation: `g(op, *inputs, **attrs)` adds a node and returns its output
    name (`out=` names the last one); `g.const(label, value)` a scalar initializer."""

    def __init__(self, helper, prefix, const):
        self.helper, self.prefix, self._const, self.nodes = helper, prefix, const, []
        self._consts = {}

    def __call__(self, op, *inputs, out=None, **attrs):
        out = out or f"{self.prefix}_{len(self.nodes)}_{op.lower()}"
        self.nodes.append(self.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def const(self, label, value):
        """One initializer per label (a second use of "one" is the same tensor)."""
        if label not in self._consts:
            self._consts[label] = (self._const(f"{self.prefix}_{label}", value), value)
        name, first = self._consts[label]
        assert first is value or np.array_equal(first, value), (label, first, value)
        return name


def _expm1_times(g, x, alpha):
    """alpha * expm1(x): elu's and selu's negative side. ONNX has no Expm1, and exp(x) - 1
    (onnxruntime's Elu and Selu too) lost x's digits near 0 (1e-2 relative at -1e-6 in
    float32): expm1(x) = tanh(x / 2) (exp(x) + 1), within 4 ulps from -1e-9 to -30."""
    expm1 = g("Mul", g("Tanh", g("Mul", x, g.const("half", 0.5))),
              g("Add", g("Exp", x), g.const("one", 1.0)))
    return g("Mul", expm1, g.const("alpha", alpha))


def _softplus(g, x, double, out=None):
    """Softplus, but in double graphs (onnxruntime has no double kernel): max(x, 0) +
    log1p(exp(-|x|)), the log1p by Kahan's trick (ONNX has none; log(1 + u) lost u below
    1e-16)."""
    if not double:
        return g("Softplus", x, out=out)
    u = g("Exp", g("Neg", g("Abs", x)))
    w = g("Add", u, g.const("one", 1.0))
    log1p = g("Where", g("Equal", w, g.const("one", 1.0)), u,
              g("Div", g("Mul", g("Log", w), u), g("Sub", w, g.const("one", 1.0))))
    return g("Add", g("Relu", x), log1p, out=out)


def _hard_sigmoid(g, x, out=None):
    """Keras 3's relu6(x + 3) / 6 (HardSigmoid's alpha x + beta cancels just above -3)."""
    clipped = g("Clip", g("Add", x, g.const("three", 3.0)), g.const("zero", 0.0),
                g.const("six", 6.0))
    return g("Div", clipped, g.const("six", 6.0), out=out)


def _activation_nodes(helper, spec, source, name, const, double):
    """[nodes] applying activation `spec` to tensor `source`; returns (nodes, output name).
    const(name, value) adds a scalar initializer. Every graph needs opset 13 only (gelu: 20).
    Where onnxruntime lacks a double kernel (LeakyRelu, Softplus, Softsign), float64 graphs
    build the function from basic operators (gelu: onnxruntime's Gelu in float, within ~1e-7
    relative, its far negative tail's tiny values to fewer relative digits); silu, sigmoid,
    elu, selu, hard_sigmoid, hard_silu and mish are built so in any graph (their operators
    need newer opsets, or lose digits: Sigmoid's tails, Elu's and Selu's exp(x) - 1 near 0,
    HardSigmoid's alpha x + beta near -3)."""
    if spec.name == "linear":
        return [], source
    out = f"{name}_{spec.name}"
    g = _Graph(helper, out, const)
    x = source
    if spec.name in ("silu", "sigmoid"):  # x / (1 + exp(-x)), 1 / (1 + exp(-x)): Sigmoid's
        # tails were off by 8x in float32 (0 at -20, where pynn gives 2.06e-9)
        g("Div", x if spec.name == "silu" else g.const("one", 1.0),
          g("Add", g("Exp", g("Neg", x)), g.const("one", 1.0)), out=out)
    elif spec.name == "hard_silu":
        g("Mul", x, _hard_sigmoid(g, x), out=out)
    elif spec.name == "mish":
        g("Mul", x, g("Tanh", _softplus(g, x, double)), out=out)
    elif spec.name == "relu6":
        g("Clip", x, g.const("zero", 0.0), g.const("six", 6.0), out=out)
    elif spec.name == "hard_sigmoid":
        _hard_sigmoid(g, x, out=out)
    elif spec.name == "softplus":
        _softplus(g, x, double, out=out)
    elif spec.name in ("elu", "selu") or double and spec.name == "leaky_relu":
        negative = g("Less", x, g.const("zero", 0.0))
        if spec.name == "leaky_relu":
            g("Where", negative, g("Mul", x, g.const("alpha", spec.param)), x, out=out)
        elif spec.name == "elu":
            g("Where", negative, _expm1_times(g, x, spec.param), x, out=out)
        else:
            inner = g("Where", negative, _expm1_times(g, x, _SELU_ALPHA), x)
            g("Mul", inner, g.const("scale", _SELU_SCALE), out=out)
    elif double and spec.name == "softsign":
        g("Div", x, g("Add", g("Abs", x), g.const("one", 1.0)), out=out)
    elif double and spec.name == "gelu_tanh":  # (onnxruntime's Gelu computed it in float)
        clipped = g("Clip", x, g.const("minus_ten", -10.0), g.const("ten", 10.0))
        cube = g("Mul", g("Mul", clipped, clipped), clipped)
        inner = g("Mul", g("Add", clipped, g("Mul", cube, g.const("k", 0.044715))),
                  g.const("c", math.sqrt(2.0 / math.pi)))
        half_x = g("Mul", x, g.const("half", 0.5))
        g("Mul", half_x, g("Add", g("Tanh", inner), g.const("one", 1.0)), out=out)
    elif double and spec.name == "gelu":
        # onnxruntime has no double Erf: its Gelu in float (~1e-7 relative), on x clipped to
        # [-20, 10] so no double beyond float's range becomes inf; above 10, gelu(x) = x
        # (x * Phi(x), Phi within 1e-23 of 1), exactly in double.
        from onnx import TensorProto

        clipped = g("Clip", x, g.const("minus_twenty", -20.0), g.const("ten", 10.0))
        inner = g("Gelu", g("Cast", clipped, to=TensorProto.FLOAT), approximate="none")
        g("Where", g("Greater", x, g.const("ten", 10.0)), x,
          g("Cast", inner, to=TensorProto.DOUBLE), out=out)
    else:
        ops = {"relu": ("Relu", {}), "tanh": ("Tanh", {}),
               "softmax": ("Softmax", {"axis": -1}),
               "leaky_relu": ("LeakyRelu", {"alpha": spec.param}),
               "gelu": ("Gelu", {"approximate": "none"}),
               "gelu_tanh": ("Gelu", {"approximate": "tanh"}),
               "softsign": ("Softsign", {}), "exponential": ("Exp", {})}
        op, attrs = ops[spec.name]
        g(op, x, out=out, **attrs)
    return g.nodes, out


def _check_graph_name(filepath):
    """ValueError for a graph written under a name that says a pynn or Keras file (.keras,
    .h5, .npz...): load_model then failed on it with a message about zip files."""
    if isinstance(filepath, str):
        suffix = next((s for s in (".keras", ".weights.h5", ".h5", ".hdf5", ".npz")
                       if filepath.lower().endswith(s)), None)
        if suffix is not None:
            raise ValueError(f"{filepath!r}: a {suffix} name is for model.save or "
                             f"save_weights; an ONNX graph goes under a .onnx name")


def export(model, filepath, opset=None):
    """Write `model` (built) to `filepath` (a path or a binary file object) as an ONNX graph
    taking 'input' (batch, *input_shape) -> 'output' (batch, *output_shape), in the model's
    float type (float32, or float64 under pynn.set_floatx('float64')). opset: by default the
    lowest the model needs, so the most runtimes load it (13; 20 with gelu); at most what the
    installed onnx package knows. Returns the onnx ModelProto written (checked by
    onnx.checker)."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    from .saving import _check_target, _is_file_object, as_target, atomic_write

    if not hasattr(model, "layers") or not hasattr(model, "built"):
        raise TypeError(f"export(model, filepath): the first argument must be a pynn model, "
                        f"got {type(model).__name__}")
    if not model.built:
        raise ValueError("build the model (fit, build or an Input) before exporting it")
    filepath = as_target(filepath)
    _check_graph_name(filepath)
    _check_target(filepath, "wb")
    newest = onnx.defs.onnx_opset_version()
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, numbers.Integral)
                              or not 13 <= opset <= newest):
        raise ValueError(f"opset must be an integer from 13 (Softmax over the last axis) to "
                         f"{newest} (the newest this onnx {onnx.__version__} knows), got "
                         f"{opset!r}")
    nodes, inits = [], []
    current = "input"
    dtype = np.dtype(model._dtype)  # what predict computes in
    elem_type = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}[dtype.type]
    double = dtype == np.float64

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
        return name

    from .engine import _sample_shapes

    # each layer's sample shape in this model (a layer shared with a model of other leading
    # axes keeps that one as its input_shape: Gemm on rank-3 inputs made an invalid file)
    for index, (layer, sample) in enumerate(zip(model.layers, _sample_shapes(model))):
        # The graph's names start with the layer's place: made from layer names alone, a
        # Dense 'd' with elu and a PReLU 'd_elu' both named an initializer 'd_elu_alpha'
        name = f"l{index}_{layer.name}"
        # Exact types: a subclass may compute something else than the operators below.
        kind = type(layer)
        if kind in (InputLayer, Dropout, GaussianNoise, GaussianDropout, AlphaDropout,
                    ActivityRegularization, Identity):
            continue  # (the identity at inference)
        if kind is Flatten:
            out = f"{name}_out"
            nodes.append(helper.make_node("Flatten", [current], [out], name=out, axis=1))
            current = out
        elif kind is Reshape:  # (0: the batch axis as it is)
            out = f"{name}_out"
            target = layer.compute_output_shape(sample)
            shape = numpy_helper.from_array(np.array((0, *target), np.int64), f"{name}_shape")
            inits.append(shape)
            nodes.append(helper.make_node("Reshape", [current, shape.name], [out], name=out))
            current = out
        elif kind is Rescaling:  # x * scale + offset, in that order (as Keras computes it)
            g = _Graph(helper, name, const)
            g("Add", g("Mul", current, g.const("scale", layer.scale)),
              g.const("offset", layer.offset), out=f"{name}_out")
            nodes += g.nodes
            current = f"{name}_out"
        elif kind is Dense:
            w = const(f"{name}_kernel", layer.kernel.numpy())
            out = f"{name}_z"
            if layer.use_bias and len(sample) == 1:
                b = const(f"{name}_bias", layer.bias.numpy())
                nodes.append(helper.make_node("Gemm", [current, w, b], [out], name=out))
            elif layer.use_bias:  # (batch, ..., features): Gemm takes 2-D inputs only
                b = const(f"{name}_bias", layer.bias.numpy())
                product = f"{name}_matmul"
                nodes += [helper.make_node("MatMul", [current, w], [product], name=product),
                          helper.make_node("Add", [product, b], [out], name=out)]
            else:
                nodes.append(helper.make_node("MatMul", [current, w], [out], name=out))
            act_nodes, current = _activation_nodes(helper, layer.activation, out, name, const,
                                                   double)
            nodes += act_nodes
        elif kind is PReLU:
            g = _Graph(helper, name, const)
            alpha = g.const("alpha", layer.alpha.numpy())
            if double:  # (onnxruntime has no double PRelu kernel)
                g("Where", g("Less", current, g.const("zero", 0.0)), g("Mul", current, alpha),
                  current, out=f"{name}_out")
            else:
                g("PRelu", current, alpha, out=f"{name}_out")
            nodes += g.nodes
            current = f"{name}_out"
        elif kind in ACTIVATION_LAYERS:
            act_nodes, current = _activation_nodes(helper, layer.activation, current, name,
                                                   const, double)
            nodes += act_nodes
        elif kind in (LayerNormalization, RMSNormalization):
            g = _Graph(helper, name, const)
            # means over the last axis as products with (1/F, ..., 1/F): no ReduceMean, whose
            # axes moved from an attribute to an input at opset 18
            features = sample[-1]
            average = g.const("average", np.full((features, 1), 1 / features))
            d = current
            if layer.centred:
                # each row shifted by its first value before the mean: a float32 mean of values
                # with a large common offset lost their differences (offset 1e4: 3e-3 off)
                first = numpy_helper.from_array(np.array([0], np.int64), f"{name}_first")
                inits.append(first)
                d = g("Sub", current, g("Gather", current, first.name, axis=-1))
                d = g("Sub", d, g("MatMul", d, average))
            spread = g("MatMul", g("Mul", d, d), average)
            y = g("Div", d, g("Sqrt", g("Add", spread, g.const("epsilon", layer.epsilon))))
            gain, shift = layer._gain_and_shift()
            if gain is not None:
                y = g("Mul", y, g.const("gain", gain.numpy()))
            if shift is not None:
                y = g("Add", y, g.const("shift", shift.numpy()))
            nodes += g.nodes
            current = y
        elif kind is Normalization:
            scale = np.maximum(np.sqrt(layer.variance.numpy().astype(np.float64)), 1e-7)
            mean = const(f"{name}_mean", layer.mean.numpy())
            scale = const(f"{name}_scale", scale)
            out, inner = f"{name}_out", f"{name}_inner"
            nodes += ([helper.make_node("Mul", [current, scale], [inner], name=inner),
                       helper.make_node("Add", [inner, mean], [out], name=out)]
                      if layer.invert else
                      [helper.make_node("Sub", [current, mean], [inner], name=inner),
                       helper.make_node("Div", [inner, scale], [out], name=out)])
            current = out
        elif kind is BatchNormalization:
            n = sample[-1]
            gamma = layer.gamma.numpy() if layer.scale else np.ones(n)
            beta = layer.beta.numpy() if layer.center else np.zeros(n)
            out = f"{name}_out"
            # The operator's epsilon is a float32 attribute (fold it in float64), and it
            # normalises axis 1: (batch, ..., features) inputs take the broadcasting form.
            if double or len(sample) > 1:
                scale = gamma / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
                shift = beta - layer.moving_mean.numpy() * scale
                scaled = f"{name}_scaled"
                nodes += [helper.make_node("Mul", [current, const(f"{name}_scale", scale)],
                                           [scaled], name=scaled),
                          helper.make_node("Add", [scaled, const(f"{name}_shift", shift)],
                                           [out], name=out)]
                current = out
                continue
            nodes.append(helper.make_node(
                "BatchNormalization",
                [current, const(f"{name}_gamma", gamma), const(f"{name}_beta", beta),
                 const(f"{name}_mean", layer.moving_mean.numpy()),
                 const(f"{name}_var", layer.moving_variance.numpy())],
                [out], name=out, epsilon=layer.epsilon))
            current = out
        else:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no ONNX "
                             f"equivalent in pynn's exporter")
    uses_gelu = any(node.op_type == "Gelu" for node in nodes)
    if opset is None:
        opset = 20 if uses_gelu else 13
    opset = int(opset)
    if opset < 20 and uses_gelu:
        raise ValueError(f"the model uses gelu, whose ONNX operator (Gelu) needs opset >= "
                         f"20, got opset {opset}")
    nodes.append(helper.make_node("Identity", [current], ["output"], name="output"))
    graph = helper.make_graph(
        nodes, model.name,
        [helper.make_tensor_value_info("input", elem_type, ["batch", *model.input_shape])],
        [helper.make_tensor_value_info("output", elem_type, ["batch", *model.output_shape])],
        initializer=inits)
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="pynn")
    # make_model writes the installed onnx's IR version, which older runtimes refuse
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(proto)
    if _is_file_object(filepath):  # a BytesIO, an open file: written as it is, as save does
        filepath.write(proto.SerializeToString())
    else:
        atomic_write(filepath, lambda f: f.write(proto.SerializeToString()))
    return proto


__all__ = ["export"]
