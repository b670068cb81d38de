"""Shared test data builders."""

import numpy as np


def make_bags(n, seed, n_inst=12, d=8):
    """Positive bags hold one instance with x0 = +3 ("the lesion slice"); negative bags hold two with
    x0 = +1.5. Both have the same expected mean, so average pooling carries no signal; only an
    instance-level look separates them."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 0.3, size=(n, n_inst, d)).astype(np.float32)
    y = rng.integers(0, 2, n)
    lesion = np.zeros(n, dtype=int)
    for i in range(n):
        k = rng.choice(n_inst, 2, replace=False)
        if y[i] == 1:
            X[i, k[0], 0] += 3.0
        else:
            X[i, k, 0] += 1.5
        lesion[i] = k[0]
    return X, np.ones((n, n_inst), bool), y, lesion
