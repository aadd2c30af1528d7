"""Seconds of one fit() call (one training step) on deep narrow Dense stacks, with and without
a BatchNormalization after each layer: the native engine's setup (binding every weight and
optimizer slot, checking that none share memory) grows with the number of arrays.
Run: python fit_setup.py (a second fit is timed: the first builds the layers)."""

import time, numpy as np, pynn
x=np.random.rand(256,8).astype("float32"); y=np.random.rand(256,1).astype("float32")
for L in (200, 800, 1600):
    for bn in (False, True):
        layers=[pynn.Input((8,))]
        for _ in range(L):
            layers.append(pynn.layers.Dense(8, activation="relu"))
            if bn: layers.append(pynn.layers.BatchNormalization())
        layers.append(pynn.layers.Dense(1))
        m=pynn.Sequential(layers); m.compile("adam","mse")
        m.fit(x,y,batch_size=256,verbose=0)
        t=time.perf_counter(); m.fit(x,y,batch_size=256,verbose=0); dt=time.perf_counter()-t
        print(L, bn, round(dt,4), m.engine_reason)
