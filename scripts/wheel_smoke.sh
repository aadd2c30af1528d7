#!/usr/bin/env bash
# Build the wheel, check it with auditwheel (manylinux policy), install it into a fresh virtual
# environment and run a smoke test there: import, info, a short training run, predict.
#   bash scripts/wheel_smoke.sh            (about 2 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
python3 -m pip wheel --no-deps -w "$out/dist" -C build-dir=build/wheel .
wheel=$(ls "$out"/dist/pynn-*.whl)
echo "built $wheel"
python3 -m pip install --quiet auditwheel
python3 -m auditwheel show "$wheel"
python3 -m venv "$out/venv"
"$out/venv/bin/pip" install --quiet "$wheel"
cd "$out"  # away from the checkout, so the installed wheel is what runs
"$out/venv/bin/python" - <<'PY'
import numpy as np
import pynn

info = pynn.info()
print("backend", info["backend"], "ISA", info["cpu"].get("isa"))
assert info["backend"] == "cpu", info
pynn.set_seed(0)
x = np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32)
y = (x[:, 0] > 0).astype(int)
model = pynn.Sequential([pynn.Input((8,)), pynn.Dense(16, activation="relu"),
                         pynn.Dense(2, activation="softmax")])
model.compile(optimizer=pynn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
history = model.fit(x, y, epochs=20, batch_size=32, verbose=0)
assert history.history["accuracy"][-1] > 0.9, history.history
assert model.predict(x[:1]).shape == (1, 2)
print("wheel smoke test passed")
PY
