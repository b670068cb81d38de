"""Every search space runs: each space's cohort is loaded (on a generated stand-in of its real
layout where it names a real dataset), embedded, and one configuration drawn from the space is
evaluated end to end, without Ray. The sweep machinery itself is covered by test_sweep/test_cli."""

import numpy as np
import pytest
from ray.tune.search.sample import Categorical, Domain

from sweeps.runner import prepare, smoke
from sweeps.spec import available_spaces, load_space
from trainables.pipeline import evaluate
from trainables.trainable import trial_data


def _first(space):
    """A deterministic configuration from a space: the first category of every choice."""
    if isinstance(space, dict):
        return {k: _first(v) for k, v in space.items()}
    if isinstance(space, Categorical):
        return _first(space.categories[0])
    if isinstance(space, Domain):
        return space.sample()
    return space


@pytest.mark.parametrize("name", [s for s in available_spaces() if s not in ("quickstart", "benchmark", "ensembles")])
def test_every_seed_space_runs_one_configuration_on_its_stand_in(name, sweeps_home):
    from dataclasses import replace

    spec = smoke(load_space(name))
    config = _first(spec.space)
    # embed only the drawn encoder/preprocessing (the stage embeds every pair a space can ask for)
    spec = replace(spec, space={**spec.space, **{k: config[k] for k in ("encoder", "preprocessing") if k in config}})
    cohort, _, handle = prepare(spec, progress=False)
    config["head"] = {"name": "logreg"} if isinstance(config["head"], dict) else "logreg"  # fast and always defined
    data = trial_data(handle, config.get("encoder"), config.get("preprocessing", "grayscale_norm"))
    res = evaluate(config, data, arms=spec.compare, n_folds=3, seed=0)
    for arm, r in res.items():
        probas = r["proba"] if isinstance(r["proba"], dict) else {None: r["proba"]}  # several targets: one each
        classes = dict(handle.targets) if handle.targets else {None: handle.class_names}
        assert set(probas) == set(classes)
        for t, p in probas.items():
            assert p.shape == (len(handle.y), len(classes[t]))
            np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
        assert 0 <= r["metrics"]["accuracy"] <= 1
