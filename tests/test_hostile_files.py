"""Files from anyone: loading reads only what the description names, checks what every member
declares before allocating, never reads other files (HDF5 external storage and links), and
turns every malformed description into a ValueError naming the file."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import pynn


def _model():
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="relu"), pynn.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng()
    model.fit(rng.normal(size=(16, 4)), rng.normal(size=(16, 2)), epochs=1, verbose=0)
    return model


def _members(path):
    with zipfile.ZipFile(path) as z:
        return {info.filename: z.read(info) for info in z.infolist()}


def _write_zip(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)


def _npy(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _with_meta(path, dst, mutate):
    members = _members(path)
    meta = json.loads(str(np.load(io.BytesIO(members["__pynn__.npy"]))))
    mutate(meta)
    members["__pynn__.npy"] = _npy(np.array(json.dumps(meta)))
    _write_zip(dst, members)
    return dst


def _load_in_a_child(path):
    """(the ValueError's message, MiB the peak RSS grew) of load_model(path) in a fresh
    interpreter: its peak memory is the loading's own."""
    code = textwrap.dedent(f"""
        import resource, pynn
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            pynn.load_model({str(path)!r})
        except ValueError as exc:
            print("ValueError", exc)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print("grew", (after - before) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ValueError"), out.stdout
    error, grew = out.stdout.rsplit("grew", 1)
    return error, int(grew)


def _h5_with_kernel(h5py, source, path, make_kernel):
    """A copy of the model file `source` (HDF5) at `path` whose 'layer1.kernel' dataset
    make_kernel(h5) creates."""
    with h5py.File(source, "r") as h5:
        meta = h5.attrs["__pynn__"]
        arrays = {k: h5[k][()] for k in h5.keys()}
    with h5py.File(path, "w") as h5:
        h5.attrs["__pynn__"] = meta
        for key, value in arrays.items():
            if key != "layer1.kernel":
                h5.create_dataset(key, data=value)
        make_kernel(h5)
    return path


def test_unreferenced_members_are_never_decompressed(tmp_path):
    """Every member was decompressed, so 1 MB of zip beside the weights could make loading
    allocate gigabytes. An extra member whose data is corrupt shows it is never read now;
    its header is still checked."""
    good = tmp_path / "good.npz"
    model = _model()
    model.save(good)
    members = _members(good)
    # random data (it compresses little), large enough that reading its header does not
    # reach the end, where the CRC is checked
    members["extra.npy"] = _npy(np.random.default_rng().normal(size=300_000))
    _write_zip(tmp_path / "extra.npz", members)
    data = bytearray((tmp_path / "extra.npz").read_bytes())
    with zipfile.ZipFile(tmp_path / "extra.npz") as z:
        info = z.getinfo("extra.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + info.compress_size - 4: start + info.compress_size] = b"\xff\xff\xff\xff"
    (tmp_path / "extra.npz").write_bytes(bytes(data))
    with zipfile.ZipFile(tmp_path / "extra.npz") as z, pytest.raises(Exception):
        z.read("extra.npy")  # the member really is corrupt
    loaded = pynn.load_model(tmp_path / "extra.npz")
    x = np.random.default_rng().normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    members["evil.npy"] = pickled.getvalue()
    _write_zip(tmp_path / "pickled.npz", members)
    with pytest.raises(ValueError, match="'evil'.*pickle"):
        pynn.load_model(tmp_path / "pickled.npz")


def test_a_header_that_claims_more_than_the_member_holds(tmp_path):
    """A (2**40,) header over a few bytes gave numpy's MemoryError ('Unable to allocate 4
    TiB'); the shape is now checked against the member's size first."""
    good = tmp_path / "good.npz"
    _model().save(good)
    members = _members(good)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (2**40,)})
    members["layer1.kernel.npy"] = header.getvalue() + b"\x00" * 64
    _write_zip(tmp_path / "claim.npz", members)
    for load in (pynn.load_model, _model().load_weights):
        with pytest.raises(ValueError, match=r"'layer1.kernel' declares shape \(1099511627776,\)"):
            load(tmp_path / "claim.npz")


def test_duplicate_member_names_are_refused_and_other_members_ignored(tmp_path):
    good = tmp_path / "good.npz"
    model = _model()
    model.save(good)
    members = _members(good)
    import warnings

    with zipfile.ZipFile(good) as z, zipfile.ZipFile(tmp_path / "dup.npz", "w") as out:
        for info in z.infolist():
            out.writestr(info, z.read(info))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns of the duplicate name
            out.writestr("layer1.kernel.npy", members["layer1.kernel.npy"])
    with pytest.raises(ValueError, match="two members named 'layer1.kernel'"):
        pynn.load_model(tmp_path / "dup.npz")
    # a member that is no array (np.savez writes only .npy) is not pynn's business
    members["README.txt"] = b"notes"
    members["layer1.kernel"] = b"not an array"
    _write_zip(tmp_path / "notes.npz", members)
    loaded = pynn.load_model(tmp_path / "notes.npz")
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_named_member_of_the_wrong_size_is_never_decompressed(tmp_path):
    """A member the description names, honestly declaring 256 MiB of zeros (256 KiB of
    deflate), was decompressed in full (twice over) before its shape was compared with the
    weight's; its header is now compared first."""
    good = tmp_path / "good.npz"
    _model().save(good)
    members = _members(good)
    members["layer1.kernel.npy"] = _npy(np.zeros(2**26, np.float32))
    _write_zip(tmp_path / "bomb.npz", members)
    error, grew = _load_in_a_child(tmp_path / "bomb.npz")
    assert "the file has shape (67108864,), the model (4, 3)" in error, error
    assert grew < 100, f"loading grew the peak RSS by {grew} MiB"


def test_hdf5_datasets_pynn_never_writes_are_refused(tmp_path):
    """A gzip chunk inflating to 512 MiB loaded (pynn writes plain datasets); a dataset never
    written allocated its declared size from the fill value."""
    h5py = pytest.importorskip("h5py")
    model = _model()
    model.save(tmp_path / "m.h5")
    kernel = model.layers[1].kernel.numpy()

    def crafted(name, make_kernel):
        return _h5_with_kernel(h5py, tmp_path / "m.h5", tmp_path / name, make_kernel)

    gzip = crafted("gzip.h5", lambda h5: h5.create_dataset(
        "layer1.kernel", data=kernel, compression="gzip"))
    with pytest.raises(ValueError, match="'layer1.kernel' is chunked or compressed"):
        pynn.load_model(gzip)
    empty = crafted("empty.h5", lambda h5: h5.create_dataset(
        "layer1.kernel", shape=(4, 3), dtype="<f4"))
    with pytest.raises(ValueError, match=r"declares shape \(4, 3\) \(48 bytes\) but stores 0"):
        pynn.load_model(empty)
    plain = crafted("plain.h5", lambda h5: h5.create_dataset("layer1.kernel", data=kernel))
    for a, b in zip(pynn.load_model(plain).get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_an_hdf5_file_of_another_library_is_named_as_not_pynns(tmp_path):
    """A Keras .weights.h5 (groups, no __pynn__): its first group was named "not an array"
    before the missing description was. load_model names it as weights; load_weights reads
    it as Keras weights (pynn.keras_files), which name what does not fit."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "keras_like.weights.h5"
    with h5py.File(path, "w") as h5:
        h5.create_group("optimizer").create_dataset("vars", data=np.zeros(3))
        h5.create_group("layers/dense/vars").create_dataset("0", data=np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"holds a Keras model's weights, not the model"):
        pynn.load_model(path)
    with pytest.raises(ValueError, match=r"\(dense\) has 2 weights in the model, the file 1"):
        _model().load_weights(path)
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5.create_dataset("k", data=np.ones((4, 3), np.float32))
    with h5py.File(path, "a") as h5:  # a link to another file's array is not followed
        h5["layers/dense/vars/1"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "k")
    with pytest.raises(ValueError, match=r"\(dense\) has 2 weights in the model, the file 1"):
        _model().load_weights(path)
    with h5py.File(path, "w") as h5:  # data stored in another file is refused
        h5.create_dataset("layers/dense/vars/0", shape=(4, 3), dtype="<f4",
                          external=[(str(tmp_path / "other.h5"), 0, 48)])
    with pytest.raises(ValueError, match="keeps its data outside the file"):
        _model().load_weights(path)


def test_hdf5_data_kept_outside_the_file_is_refused(tmp_path):
    """h5py follows external storage and external links: a crafted 'model' read any file of
    the machine into its weights (and out through predictions)."""
    h5py = pytest.importorskip("h5py")
    model = _model()
    model.save(tmp_path / "m.h5")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"API_KEY=0123456789abcdef" + b"!" * 24)

    def crafted(name, replace):
        return _h5_with_kernel(h5py, tmp_path / "m.h5", tmp_path / name, replace)

    external = crafted("external.h5", lambda h5: h5.create_dataset(
        "layer1.kernel", shape=(4, 3), dtype="<f4", external=[(str(secret), 0, 48)]))
    with pytest.raises(ValueError, match="'layer1.kernel' keeps its data outside the file"):
        pynn.load_model(external)
    with pytest.raises(ValueError, match="outside the file"):
        _model().load_weights(external)

    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5.create_dataset("k", data=np.ones((4, 3), np.float32))
    linked = crafted("linked.h5", lambda h5: h5.__setitem__(
        "layer1.kernel", h5py.ExternalLink(str(tmp_path / "other.h5"), "k")))
    with pytest.raises(ValueError, match="'layer1.kernel' is a ExternalLink"):
        pynn.load_model(linked)
    soft = crafted("soft.h5", lambda h5: h5.__setitem__("layer1.kernel",
                                                         h5py.SoftLink("/layer2.kernel")))
    with pytest.raises(ValueError, match="is a SoftLink"):
        pynn.load_model(soft)


def test_huge_declared_layers_cost_no_memory_before_the_mismatch(tmp_path):
    """The layers were built, with float64 draws, from the file's config before its arrays
    were compared: a 4 KB file declaring Dense(15000) on 20000 inputs cost 3.4 GB. Built
    for loading, pynn's initializers draw nothing (zero pages) and the mismatch is found at
    once."""
    good = tmp_path / "good.npz"
    _model().save(good)

    def huge(meta):
        layers = meta["config"]["layers"]
        layers[0]["config"]["shape"] = [20000]
        layers[1]["config"]["units"] = 15000
    _with_meta(good, tmp_path / "huge.npz", huge)
    error, grew = _load_in_a_child(tmp_path / "huge.npz")
    assert "(4, 3)" in error, error
    assert grew < 200, f"loading grew the peak RSS by {grew} MiB"


@pytest.mark.parametrize("given", [False, True])
def test_a_huge_declared_normalization_costs_no_memory_either(tmp_path, given):
    """Normalization built its mean and variance (zeros and ones, float64) before the
    file's arrays were compared: 24 bytes a declared feature (768 MiB for 2**25)."""
    layer = (pynn.layers.Normalization(mean=0.0, variance=1.0) if given
             else pynn.layers.Normalization())
    model = pynn.Sequential([pynn.Input((4,)), layer, pynn.Dense(2)])
    if not given:
        layer.adapt(np.random.default_rng().normal(size=(8, 4)))
    model.save(tmp_path / "good.npz")

    def huge(meta):
        meta["config"]["layers"][0]["config"]["shape"] = [2**25]
    _with_meta(tmp_path / "good.npz", tmp_path / "huge.npz", huge)
    error, grew = _load_in_a_child(tmp_path / "huge.npz")
    assert "(4,)" in error, error
    assert grew < 100, f"loading grew the peak RSS by {grew} MiB"


class _WithBuffer(pynn.layers.Layer):
    """A layer of a user's own whose fixed buffer comes from an initializer (no weight)."""

    def build(self, input_shape, backend, dtype):
        super().build(input_shape, backend, dtype)
        self.offset = pynn.initializers.Constant(2.0)(tuple(input_shape), dtype)

    def forward(self, x, training=False, logits=False):
        return x + self.offset


def test_loading_draws_nothing_yet_initializers_work_for_the_users_layers(tmp_path):
    """Built for loading, weights start as zeros (the file's replace them); an initializer
    a layer calls itself still gives its values (a user's buffer became zeros)."""
    calls = []

    class Counting(pynn.initializers.GlorotUniform):
        def __call__(self, shape, dtype="float32"):
            calls.append(shape)
            return super().__call__(shape, dtype)

    model = pynn.Sequential([pynn.Input((4,)), _WithBuffer(),
                             pynn.Dense(3, kernel_initializer=Counting())])
    assert calls == [(4, 3)]
    model.save(tmp_path / "m.npz")
    pynn.set_seed(5)
    expected_draw = pynn.config.rng().random()
    pynn.set_seed(5)
    loaded = pynn.load_model(tmp_path / "m.npz", custom_objects={
        "_WithBuffer": _WithBuffer, "Counting": Counting})
    assert calls == [(4, 3)]  # not drawn again for loading
    assert pynn.config.rng().random() == expected_draw
    x = np.random.default_rng().normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("mutate, match", [
    (lambda m: m["layers"].__setitem__(0, 7), "description is invalid"),
    (lambda m: m["layers"][1].__setitem__("weights", 5), "description is invalid"),
    (lambda m: m.__setitem__("compile", [1, 2]), "description is invalid"),
    (lambda m: m["optimizer_state"].__setitem__("slots", 3), "description is invalid"),
    (lambda m: m["optimizer_state"].__setitem__("iterations", -5), "step count -5"),
    (lambda m: m["optimizer_state"].__setitem__("iterations", 2**80), "step count"),
    (lambda m: m["optimizer_state"].__setitem__("iterations", 1.5), "step count"),
    (lambda m: m["config"]["layers"][1]["config"].__setitem__("units", 10**4000),
     "good.npz|bad.npz"),
    (lambda m: m.__setitem__("format_version", True), "format version True is not a"),
    (lambda m: m.__setitem__("format_version", -5), "format version -5 is not a"),
    (lambda m: m["compile"]["optimizer"]["config"].__setitem__(
        "learning_rate", {"class_name": "LearningRateSchedule", "config": {}}),
     "LearningRateSchedule"),
    (lambda m: m["config"]["layers"][1]["config"].__setitem__("units", 2**40),
     # MemoryError before. Where memory is overcommitted (a 128 GiB GPU host took the
     # 16 TiB of untouched pages) the build succeeds and the weights' shape is refused.
     "bad.npz' declares layers too large to build|bad.npz': layer .* the file has shape"),
])
def test_malformed_descriptions_are_value_errors(tmp_path, mutate, match):
    """Each gave a TypeError, AttributeError, KeyError or OverflowError (a traceback in the
    command line, uncaught by services catching ValueError); a negative step count loaded and
    made every weight NaN at the next fit."""
    good = tmp_path / "good.npz"
    _model().save(good)
    bad = _with_meta(good, tmp_path / "bad.npz", mutate)
    with pytest.raises(ValueError, match=match):
        pynn.load_model(bad)


def test_deeply_nested_json_and_non_float_slots(tmp_path):
    good = tmp_path / "good.npz"
    _model().save(good)
    members = _members(good)
    nested = members.copy()
    nested["__pynn__.npy"] = _npy(np.array("[" * 100000 + "]" * 100000))
    _write_zip(tmp_path / "nested.npz", nested)
    with pytest.raises(ValueError, match="not valid JSON"):
        pynn.load_model(tmp_path / "nested.npz")
    slot = next(name for name in members if name.startswith("opt."))
    ints = members.copy()
    shape = np.load(io.BytesIO(members[slot])).shape
    ints[slot] = _npy(np.zeros(shape, dtype=np.complex64))
    _write_zip(tmp_path / "complex.npz", ints)
    with pytest.raises(ValueError, match="dtype complex64"):
        pynn.load_model(tmp_path / "complex.npz")
    ints[slot] = _npy(np.zeros(shape, dtype=np.int32))
    _write_zip(tmp_path / "ints.npz", ints)
    with pytest.raises(ValueError, match="dtype int32, expected floats"):
        pynn.load_model(tmp_path / "ints.npz")


def test_load_weights_builds_from_the_stored_array_not_the_claimed_shape(tmp_path):
    model = _model()
    model.save_weights(tmp_path / "w.npz")

    def claim(meta):
        meta["layers"][1]["weights"][0]["shape"] = [70000, 3]
    _with_meta(tmp_path / "w.npz", tmp_path / "claim.npz", claim)
    fresh = pynn.Sequential([pynn.Dense(3, activation="relu"), pynn.Dense(2)])
    fresh.load_weights(tmp_path / "claim.npz")
    assert fresh.input_shape == (4,)
    for a, b in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_corrupt_members_name_the_member(tmp_path):
    """A bad .npy header raised tokenize.TokenError, an unknown compression method
    NotImplementedError, an encrypted member RuntimeError."""
    good = tmp_path / "good.npz"
    _model().save(good)
    members = _members(good)
    members["layer1.bias.npy"] = b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4',\n"
    _write_zip(tmp_path / "header.npz", members)
    with pytest.raises(ValueError, match="'layer1.bias'"):
        pynn.load_model(tmp_path / "header.npz")

    members["layer1.bias.npy"] = _npy(np.zeros(3, np.float32))[:-5]  # cut short
    _write_zip(tmp_path / "short.npz", members)
    with pytest.raises(ValueError, match="'layer1.bias' declares shape"):
        pynn.load_model(tmp_path / "short.npz")


@pytest.mark.parametrize("field, layer", [("trainable", 1), ("use_bias", 1),
                                          ("trainable", 2), ("center", 2)])
def test_text_flags_are_refused_not_read_as_true(tmp_path, field, layer):
    """bool("false") is True: a file's "false" made a layer trainable (or kept its bias)."""
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3), pynn.BatchNormalization()])
    model.save(tmp_path / "m.npz")
    _with_meta(tmp_path / "m.npz", tmp_path / "bad.npz",
               lambda m: m["config"]["layers"][layer]["config"].__setitem__(field, "false"))
    with pytest.raises(ValueError, match=f"{field} must be True or False, got 'false'"):
        pynn.load_model(tmp_path / "bad.npz")
    with pytest.raises(TypeError, match="trainable must be True or False"):
        model.layers[1].trainable = "no"


def _patch_claimed_size(path, member, size):
    """Rewrite the uncompressed size the zip's central directory claims for `member`."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    at = data.find(b"PK\x01\x02")
    while at != -1:
        n = int.from_bytes(data[at + 28:at + 30], "little")
        if data[at + 46:at + 46 + n] == name:
            data[at + 24:at + 28] = size.to_bytes(4, "little")
            path.write_bytes(bytes(data))
            return
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"no {member} in {path}")


def test_what_a_member_claims_is_bounded_by_its_compressed_bytes(tmp_path):
    """The zip directory's uncompressed size is the file author's claim: 2.5 KB files made
    loading reserve gigabytes (MemoryError) or decompress bzip2 bombs; numpy writes only
    stored and deflated members, and deflate expands at most ~1032-fold."""
    good = tmp_path / "good.npz"
    _model().save(good)
    members = _members(good)
    _write_zip(tmp_path / "claim.npz", members)
    _patch_claimed_size(tmp_path / "claim.npz", "layer1.kernel.npy", 0xFFFFFFF0)
    with pytest.raises(ValueError, match="'layer1.kernel' claims 4,294,967,280 bytes"):
        pynn.load_model(tmp_path / "claim.npz")
    with zipfile.ZipFile(tmp_path / "bz.npz", "w", zipfile.ZIP_BZIP2) as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(ValueError, match="uses compression method 12; pynn reads stored or"):
        pynn.load_model(tmp_path / "bz.npz")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<U0", "fortran_order": False, "shape": (2**40,)})
    members["__pynn__.npy"] = header.getvalue()
    _write_zip(tmp_path / "u0.npz", members)
    with pytest.raises(ValueError, match="has dtype <U0"):
        pynn.load_model(tmp_path / "u0.npz")


def test_dtypes_and_the_description_are_checked_before_reading(tmp_path):
    """A member of the weight's shape with a 4 MB string dtype was read in full before
    'expected floats'; the description's size was never checked."""
    good = tmp_path / "good.npz"
    _model().save(good)
    members = _members(good)
    strings = dict(members)
    strings["layer1.kernel.npy"] = _npy(np.full((4, 3), "x" * 100_000))
    _write_zip(tmp_path / "strings.npz", strings)
    with pytest.raises(ValueError, match=r"array 'layer1.kernel' has dtype <U100000, expected"):
        pynn.load_model(tmp_path / "strings.npz")
    big = dict(members)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<U16777217", "fortran_order": False, "shape": ()})
    big["__pynn__.npy"] = header.getvalue() + bytes(4 * 16777217)
    _write_zip(tmp_path / "big.npz", big)
    with pytest.raises(ValueError, match="description is not one string of at most"):
        pynn.load_model(tmp_path / "big.npz")


def test_optimizer_slots_are_one_per_weight_and_slot(tmp_path):
    """300 entries repeating a slot under other keys loaded (each read in full)."""
    good = tmp_path / "good.npz"
    model = _model()
    model.save(good)

    def repeat(meta):
        slots = meta["optimizer_state"]["slots"]
        slots.append({**slots[0]})
    _with_meta(good, tmp_path / "twice.npz", repeat)
    with pytest.raises(ValueError, match="optimizer state entry .* is invalid"):
        pynn.load_model(tmp_path / "twice.npz")

    def unknown(meta):
        meta["optimizer_state"]["slots"][0]["slot"] = "momentum_of_doom"
    _with_meta(good, tmp_path / "unknown.npz", unknown)
    with pytest.raises(ValueError, match="optimizer state entry .* is invalid"):
        pynn.load_model(tmp_path / "unknown.npz")


def test_a_failed_load_weights_leaves_an_unbuilt_model_unbuilt(tmp_path):
    model = _model()
    model.save_weights(tmp_path / "w.npz")
    members = _members(tmp_path / "w.npz")
    members["layer2.kernel.npy"] = _npy(np.zeros((3, 5), np.float32))  # does not fit
    _write_zip(tmp_path / "bad.npz", members)
    fresh = pynn.Sequential([pynn.Dense(3, activation="relu"), pynn.Dense(2)])
    with pytest.raises(ValueError, match=r"the file has shape \(3, 5\), the model \(3, 2\)"):
        fresh.load_weights(tmp_path / "bad.npz")
    assert not fresh.built and fresh.input_shape is None
    assert all(not layer.built and not layer.params for layer in fresh.layers)
    fresh.load_weights(tmp_path / "w.npz")  # and the right file still loads
    for a, b in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_deep_descriptions_build_once_and_flatten_counts_exactly(monkeypatch):
    """Each layer of Sequential(layers) was added (and the model rebuilt) one by one: a
    16,000-layer description took 20 s to load. Flatten's size wrapped past 2**63."""
    builds = []
    real = pynn.Sequential._build
    monkeypatch.setattr(pynn.Sequential, "_build",
                        lambda self, shape: builds.append(shape) or real(self, shape))
    model = pynn.Sequential([pynn.Input((3,))] + [pynn.Activation("relu") for _ in range(200)])
    assert len(builds) == 1 and model.built
    with pytest.raises(ValueError, match="already in the model"):
        pynn.Sequential([pynn.Dense(2, name="a"), pynn.Dense(2, name="a")])
    assert pynn.Flatten().compute_output_shape((2**62 + 1, 4)) == (4 * (2**62 + 1),)
    with pytest.raises(TypeError, match="name must be a string"):
        pynn.Dense(2, name=["a"])


def test_second_review_regressions(tmp_path):
    """skip_mismatch into an unbuilt model left the skipped layers' weights at zeros (built
    for loading); save wrote descriptions loading refuses; an old file's numeric layer name
    no longer loaded; a failed load detached the caller's model.layers list."""
    base = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="relu"), pynn.Dense(2)])
    base.save_weights(tmp_path / "w.npz")
    other = pynn.Sequential([pynn.Dense(3, activation="relu"), pynn.Dense(5)])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        skipped = other.load_weights(tmp_path / "w.npz", skip_mismatch=True)
    assert skipped == [other.layers[-1].name]
    assert np.abs(other.layers[-1].kernel.numpy()).sum() > 0  # initialised, not zeros

    class Table(pynn.layers.Layer):
        def __init__(self, table=(), **kw):
            super().__init__(**kw)
            self.table = list(table)

        def forward(self, x, training=False, logits=False):
            return x

        def get_config(self):
            return {**super().get_config(), "table": self.table}

    big = pynn.Sequential([pynn.Input((2,)), Table(range(3_000_000))])
    with pytest.raises(ValueError, match="more than the 16,777,216 a pynn file holds"):
        big.save(tmp_path / "big.npz")
    assert not (tmp_path / "big.npz").exists()

    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3)])
    model.save(tmp_path / "m.npz")
    _with_meta(tmp_path / "m.npz", tmp_path / "named.npz",
               lambda m: m["config"]["layers"][1]["config"].__setitem__("name", 7))
    assert pynn.load_model(tmp_path / "named.npz").layers[1].name == "7"

    fresh = pynn.Sequential([pynn.Dense(3), pynn.Dense(7)])
    held = fresh.layers
    with pytest.raises(ValueError):
        fresh.load_weights(tmp_path / "w.npz")
    assert fresh.layers == held and len(held) == 2 and not fresh.built
