"""Keras' activation layers by class (ReLU, LeakyReLU, ELU, Softmax): Keras 3's arguments,
defaults and names, the native engine, files and ONNX."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import AVAILABLE, import_keras, onnx_outputs

import pynn
from pynn.activations import Spec
from pynn.layers import ELU, LeakyReLU, ReLU, Softmax

CASES = [(ReLU(), Spec("relu")), (ReLU(negative_slope=0.1), Spec("leaky_relu", 0.1)),
         (ReLU(max_value=6), Spec("relu6")), (LeakyReLU(), Spec("leaky_relu", 0.3)),
         (LeakyReLU(0.05), Spec("leaky_relu", 0.05)), (ELU(), Spec("elu", 1.0)),
         (ELU(0.4), Spec("elu", 0.4)), (Softmax(), Spec("softmax"))]


@pytest.mark.parametrize("layer,spec", CASES, ids=lambda c: repr(c) if isinstance(c, Spec)
                         else type(c).__name__)
def test_each_is_its_activation(rng, layer, spec):
    assert layer.activation == spec
    x = (rng.normal(size=(9, 7)) * 4).astype(np.float32)
    model = pynn.Sequential([pynn.Input((7,)), layer])
    np.testing.assert_allclose(model.predict(x), spec(x), rtol=3e-7, atol=1e-7)  # C++, NumPy


def test_kerass_layers_agree(rng):
    keras = import_keras()
    x = (rng.normal(size=(9, 7)) * 4).astype(np.float32)
    for ours, theirs in ((ReLU(), keras.layers.ReLU()),
                         (ReLU(max_value=6.0), keras.layers.ReLU(max_value=6.0)),
                         (ReLU(negative_slope=0.1), keras.layers.ReLU(negative_slope=0.1)),
                         (LeakyReLU(), keras.layers.LeakyReLU()),
                         (ELU(0.7), keras.layers.ELU(0.7)), (Softmax(), keras.layers.Softmax())):
        got = pynn.Sequential([pynn.Input((7,)), ours]).predict(x)
        np.testing.assert_allclose(got, keras.ops.convert_to_numpy(theirs(x)), rtol=1e-6,
                                   atol=1e-7, err_msg=type(ours).__name__)
    assert ReLU().name.startswith("re_lu") and LeakyReLU().name.startswith("leaky_re_lu")
    assert ELU().name.startswith("elu")  # Keras 3's names for these classes


@pytest.mark.skipif("cpu" not in AVAILABLE, reason="no cpu backend")
def test_the_native_engine_trains_them_as_the_layers_do(rng):
    x = rng.normal(size=(80, 5)).astype(np.float32)
    y = rng.integers(0, 3, 80)
    results = {}
    for engine in ("native", "layers"):
        pynn.set_seed(5)
        model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(8), LeakyReLU(),
                                 pynn.Dense(8), ReLU(max_value=6), pynn.Dense(8), ELU(0.5),
                                 pynn.Dense(3), Softmax()])
        model.compile("adam", "sparse_categorical_crossentropy", backend="cpu")
        results[engine] = model.fit(x, y, epochs=2, batch_size=16, verbose=0,
                                    engine=engine).history["loss"], model.get_weights()
    np.testing.assert_allclose(results["native"][0], results["layers"][0], rtol=1e-5)
    for a, b in zip(results["native"][1], results["layers"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_files_keep_kerass_arguments(rng, tmp_path):
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(6), ReLU(max_value=6),
                             pynn.Dense(6), LeakyReLU(0.2), pynn.Dense(6), ELU(0.3),
                             pynn.Dense(2), Softmax()])
    configs = [layer["config"] for layer in model.get_config()["layers"][2::2]]
    assert {k: configs[0][k] for k in ("max_value", "negative_slope", "threshold")} == \
        {"max_value": 6.0, "negative_slope": 0.0, "threshold": 0.0}
    assert configs[1]["negative_slope"] == 0.2 and configs[2]["alpha"] == 0.3
    assert configs[3]["axis"] == -1 and all("activation" not in c for c in configs)
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz")
    assert [type(layer).__name__ for layer in loaded.layers[2::2]] == \
        ["ReLU", "LeakyReLU", "ELU", "Softmax"]
    x = rng.normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    np.testing.assert_allclose(onnx_outputs(model, x), model.predict(x), rtol=1e-5, atol=1e-6)


def test_what_has_no_kernel_is_refused():
    with pytest.raises(ValueError, match="threshold=0.5 is not supported"):
        ReLU(threshold=0.5)
    with pytest.raises(ValueError, match="max_value=3 is not supported"):
        ReLU(max_value=3)
    with pytest.raises(ValueError, match="max_value=6 with negative_slope=0.1 is not"):
        ReLU(max_value=6, negative_slope=0.1)
    with pytest.raises(ValueError, match="negative_slope must be a finite number >= 0"):
        LeakyReLU(-0.1)
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        ELU(float("nan"))
    with pytest.raises(ValueError, match="axis=0 is not supported"):
        Softmax(axis=0)
    with pytest.warns(UserWarning, match="`alpha` is deprecated"):
        assert LeakyReLU(alpha=0.2).negative_slope == 0.2  # Keras 2 code


def test_kerass_attributes_set_the_activation():
    leaky = LeakyReLU()
    leaky.negative_slope = 0.5  # Keras computes with it at once; files stored it only
    x = np.array([[-1.0, 2.0]], np.float32)
    np.testing.assert_allclose(leaky(x), [[-0.5, 2.0]])
    assert leaky.get_config()["negative_slope"] == 0.5
    relu = ReLU()
    relu.max_value = 6
    assert relu.activation == Spec("relu6") and relu.get_config()["max_value"] == 6.0
    with pytest.raises(ValueError, match="threshold=1 is not supported"):
        relu.threshold = 1
    assert relu.threshold == 0.0 and relu.activation == Spec("relu6")  # unchanged
    elu = ELU()
    elu.alpha = 0.25
    assert elu.activation == Spec("elu", 0.25)


def test_an_unbuilt_model_takes_sequences_through_them(rng):
    for first in (LeakyReLU(), pynn.layers.LayerNormalization(), pynn.layers.RMSNormalization()):
        model = pynn.Sequential([first, pynn.Dense(2)])
        model.compile("sgd", "mse")
        model.fit(rng.normal(size=(6, 4, 3)), rng.normal(size=(6, 4, 2)), verbose=0)
        assert model.input_shape == (4, 3), type(first).__name__
