"""The shared training loop: every option a space can sweep changes what is trained, the defaults
reproduce the pooler training it replaced bit for bit, and the inner validation split and hidden
labels come from the training samples only."""

import copy

import numpy as np
import pytest
import torch
from sklearn.datasets import make_moons
from torch import nn

from trainables.pooling import AttentionPool, GatedAttentionPool, MeanPool, fit_poolers
from trainables.sampling import balanced_class_weight
from trainables.training import TRAIN_OPTION_NAMES, TrainOptions, fit, options_from, training_device

from tests_helpers import make_bags


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one thread avoids oversubscription (10x faster)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fit_poolers_before(poolers, bags, y, n_classes, *, epochs=40, lr=1e-2, batch_size=512,
                        weight_decay=1e-4, class_weight=None, seed=0):
    """fit_poolers as it was before the shared loop (commit 84077b9), kept verbatim as the reference."""
    learn = {m: p for m, p in poolers.items() if p.learnable}
    if not learn:
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    heads = nn.ModuleDict({m: nn.Linear(p.out_dim, n_classes) for m, p in learn.items()}).to(device)
    for p in learn.values():
        p.to(device)
    params = list(heads.parameters()) + [q for p in learn.values() for q in p.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    xs = {m: torch.as_tensor(bags[m][0], dtype=torch.float32, device=device) for m in learn}
    ms = {m: torch.as_tensor(bags[m][1], dtype=torch.bool, device=device) for m in learn}
    yt = torch.as_tensor(y, dtype=torch.long, device=device)
    cw = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32, device=device)
    loss_fn = nn.CrossEntropyLoss(weight=cw)
    n = len(yt)
    batch = min(batch_size, n)
    for p in learn.values():
        p.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g).to(device)
        for start in range(0, n, batch):
            idx = perm[start : start + batch]
            logits = torch.zeros(len(idx), n_classes, device=device)
            for m, p in learn.items():
                present = ms[m][idx].any(1, keepdim=True).float()  # (b, 1)
                logits = logits + heads[m](p(xs[m][idx], ms[m][idx])) * present
            loss = loss_fn(logits, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    for p in learn.values():
        p.cpu().eval()


def _two_modality_bags():
    X, m, y, _ = make_bags(90, 3)
    X2, m2, _, _ = make_bags(90, 4)
    m2[:15] = False  # fifteen samples miss the second series
    X2[:15] = 0
    return {"a": (X, m), "b": (X2, m2), "c": (X, m)}, y


def _poolers(seed, dropout):
    torch.manual_seed(seed)
    return {"a": AttentionPool(8, 16, dropout), "b": GatedAttentionPool(8, 8, dropout), "c": MeanPool(8)}


def _state(poolers):
    return {(k, n): t.clone() for k, p in poolers.items() for n, t in p.state_dict().items()}


@pytest.mark.parametrize("kw", [
    dict(seed=0, epochs=5),
    dict(seed=1, epochs=7, batch_size=32, class_weight=np.array([0.7, 1.6])),
    dict(seed=2, epochs=4, lr=3e-2, weight_decay=1e-2, dropout=0.3),
    dict(seed=3, epochs=3, batch_size=40, dropout=0.5),
])
def test_default_options_train_poolers_bit_identical_to_the_loop_they_replaced(kw):
    kw = dict(kw)
    dropout = kw.pop("dropout", 0.0)
    bags, y = _two_modality_bags()
    new, old = _poolers(kw["seed"], dropout), _poolers(kw["seed"], dropout)
    fit_poolers(new, bags, y, 2, **kw)
    _fit_poolers_before(old, bags, y, 2, **kw)
    a, b = _state(new), _state(old)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in b), "default training options changed the trained poolers"
    assert not torch.equal(a[("a", "V.weight")], _state(_poolers(kw["seed"], dropout))[("a", "V.weight")])


# -- a small generic model: the loop works for anything with a forward over sample indices ----------

def _task(n=80, d=10, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32) * scale
    y = (X[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(np.int64)
    return torch.as_tensor(X, device=training_device()), y


def _mlp(d=10, hidden=32, seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 2))


def _forward(X):
    return lambda model, idx: model(X[idx])


def _params(model):
    return torch.cat([p.detach().flatten().cpu() for p in model.parameters()])


def test_options_from_names_an_unknown_option_with_a_suggestion():
    with pytest.raises(ValueError, match=r"unknown training option 'grad_clp'.*Did you mean 'grad_clip'"):
        options_from({"grad_clp": 1.0})
    with pytest.raises(ValueError, match=r"optimizer='adanw'.*Did you mean 'adamw'"):
        options_from({"optimizer": "adanw"})
    assert options_from({"optimizer": "AdamW"}).optimizer == "adamw"
    with pytest.raises(ValueError, match="val_fraction"):
        options_from({"val_fraction": 1.5})
    with pytest.raises(ValueError, match="epochs"):
        options_from({"epochs": 2.5})
    o = options_from({"epochs": np.int64(7), "lr": np.float32(0.5), "class_weighted": np.bool_(True)})
    assert (o.epochs, type(o.epochs), o.class_weighted) == (7, int, True)
    assert TRAIN_OPTION_NAMES == set(vars(TrainOptions()))


def test_fit_poolers_passes_training_options_through_and_rejects_unknown_ones():
    bags, y = _two_modality_bags()
    with pytest.raises(ValueError, match="Did you mean 'early_stopping'"):
        fit_poolers(_poolers(0, 0.0), bags, y, 2, early_stoping=3)
    seen = []
    h = fit_poolers(_poolers(0, 0.0), bags, y, 2, epochs=6, schedule="step", on_epoch=lambda e, m: seen.append(m))
    assert h["epochs_run"] == len(seen) == 6
    assert seen[0]["lr"] == 1e-2 and seen[-1]["lr"] == pytest.approx(1e-4), "the schedule reached the poolers"


def test_same_seed_same_model_and_the_seed_drives_batch_order():
    X, y = _task()
    runs = []
    for seed in (0, 0, 1):
        model = _mlp()
        fit(model, _forward(X), y, 2, TrainOptions(epochs=5, batch_size=16), seed=seed)
        runs.append(_params(model))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_shuffle_off_takes_batches_in_order_and_a_given_generator_draws_the_order():
    X, y = _task()
    seen = []

    def forward(model, idx):
        seen.append(idx.cpu().tolist())
        return model(X[idx])

    fit(_mlp(), forward, y, 2, TrainOptions(epochs=2, batch_size=len(y)), shuffle=False)
    assert seen == [list(range(len(y)))] * 2
    seen.clear()
    g = torch.Generator().manual_seed(5)
    fit(_mlp(), forward, y, 2, TrainOptions(epochs=1, batch_size=len(y)), seed=0, generator=g)
    assert seen == [torch.randperm(len(y), generator=torch.Generator().manual_seed(5)).tolist()]
    assert not torch.equal(g.get_state(), torch.Generator().manual_seed(5).get_state()), "fit drew from the caller's generator"


def test_sample_weight_weights_the_training_loss():
    X, y = _task()
    runs = {}
    for name, w in (("none", None), ("ones", np.ones(len(y))), ("zeros_on_half", (np.arange(len(y)) % 2).astype(float))):
        model = _mlp()
        h = fit(model, _forward(X), y, 2, TrainOptions(epochs=3, batch_size=len(y)), sample_weight=w)
        runs[name] = (_params(model), h["train_loss"])
    torch.testing.assert_close(runs["ones"][0], runs["none"][0])  # the weighted mean of equal weights is the mean
    assert not torch.equal(runs["zeros_on_half"][0], runs["none"][0])
    with pytest.raises(ValueError, match="3 weights for"):
        fit(_mlp(), _forward(X), y, 2, TrainOptions(epochs=1), sample_weight=np.ones(3))


def test_on_epoch_is_called_once_per_epoch_with_the_metrics():
    X, y = _task()
    calls = []
    h = fit(_mlp(), _forward(X), y, 2, TrainOptions(epochs=7, early_stopping=50), on_epoch=lambda e, m: calls.append((e, m)))
    assert [e for e, _ in calls] == list(range(7)) and h["epochs_run"] == 7
    for _, m in calls:
        assert set(m) == {"train_loss", "val_loss", "val_acc", "lr"}
        assert np.isfinite(m["train_loss"]) and np.isfinite(m["val_loss"]) and 0 <= m["val_acc"] <= 1
    assert calls[-1][1]["train_loss"] < calls[0][1]["train_loss"]
    assert h["per_epoch"] == [m for _, m in calls]


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_optimizer_choice_changes_the_training(name):
    X, y = _task()
    base, other = _mlp(), _mlp()
    fit(base, _forward(X), y, 2, TrainOptions(epochs=3, weight_decay=0.1))
    fit(other, _forward(X), y, 2, TrainOptions(epochs=3, weight_decay=0.1, optimizer=name))
    assert not torch.allclose(_params(base), _params(other))


def test_grad_clip_bounds_the_update_norm():
    X, y = _task(scale=20.0)  # large inputs: large gradients
    steps = {}
    for clip in (0.0, 0.01):
        model = _mlp()
        before = _params(model)
        fit(model, _forward(X), y, 2, TrainOptions(optimizer="sgd", lr=1.0, weight_decay=0.0, epochs=1, grad_clip=clip))
        steps[clip] = float((_params(model) - before).norm())
    assert steps[0.01] <= 0.01 * 1.0 + 1e-6  # one SGD step moves by lr x the clipped gradient
    assert steps[0.0] > 10 * steps[0.01]


@pytest.mark.parametrize("schedule", ["none", "cosine", "onecycle", "step"])
def test_schedule_changes_the_learning_rate_over_epochs(schedule):
    X, y = _task()
    seen = []
    h = fit(_mlp(), _forward(X), y, 2, TrainOptions(epochs=9, lr=0.1, schedule=schedule, batch_size=20),
            on_epoch=lambda e, m: seen.append(m["lr"]))
    lr = np.array([m["lr"] for m in h["per_epoch"]])
    assert np.array_equal(lr, seen)
    if schedule == "none":
        assert np.all(lr == 0.1)
    elif schedule == "cosine":
        assert lr[0] == 0.1 and np.all(np.diff(lr) < 0) and lr[-1] < 0.01
    elif schedule == "onecycle":
        top = lr.argmax()
        assert lr[0] < 0.01 and 0 < top < 8 and lr[top] > 0.09 and lr[-1] < lr[top] / 10
    else:
        assert np.allclose(lr, [0.1] * 3 + [0.01] * 3 + [0.001] * 3)


def test_early_stopping_stops_an_overfitting_model_restores_the_best_epoch_and_validates_on_training_samples():
    rng = np.random.default_rng(0)
    X = torch.as_tensor(rng.normal(size=(80, 10)).astype(np.float32), device=training_device())
    y = rng.integers(0, 2, 80)  # random labels: the validation loss can only get worse as it memorises
    model = nn.Sequential(nn.Linear(10, 128), nn.ReLU(), nn.Linear(128, 2))
    trained_on, snapshots = set(), {}

    def forward(model, idx):
        if torch.is_grad_enabled():
            trained_on.update(idx.tolist())
        return model(X[idx])

    h = fit(model, forward, y, 2, TrainOptions(epochs=300, early_stopping=5, val_fraction=0.25),
            on_epoch=lambda e, m: snapshots.__setitem__(e, copy.deepcopy(model.state_dict())))
    assert h["epochs_run"] < 300 and h["epochs_run"] == h["best_epoch"] + 1 + 5
    val = set(h["val_idx"].tolist())
    assert val and val <= set(range(80)), "the inner split is drawn from the training samples given"
    assert not val & trained_on and trained_on | val == set(range(80)), "no gradient from the inner split"
    assert sorted(np.bincount(y[h["val_idx"]])) == sorted(np.round(0.25 * np.bincount(y)).astype(int)), "stratified"
    best = snapshots[h["best_epoch"]]
    assert all(torch.equal(best[k].cpu(), v) for k, v in model.state_dict().items()), "best-epoch weights restored"
    assert not torch.equal(snapshots[h["epochs_run"] - 1]["0.weight"].cpu(), model.state_dict()["0.weight"])
    assert h["val_loss"] == min(m["val_loss"] for m in h["per_epoch"])


def test_ema_weights_are_the_result_and_differ_from_the_raw_weights():
    X, y = _task()
    init = _mlp()
    raw, avg = copy.deepcopy(init), copy.deepcopy(init)
    fit(raw, _forward(X), y, 2, TrainOptions(epochs=1))
    fit(avg, _forward(X), y, 2, TrainOptions(epochs=1, ema=0.5))
    # one full-batch step: the average weighs start and end by min(0.5, 1/2)
    assert torch.allclose(_params(avg), 0.5 * _params(init) + 0.5 * _params(raw), atol=1e-7)
    assert not torch.allclose(_params(avg), _params(raw))


def test_ema_weights_are_the_ones_validated():
    X, y = _task()
    models = {ema: _mlp() for ema in (0.0, 0.9)}
    hist = {ema: fit(m, _forward(X), y, 2, TrainOptions(epochs=4, early_stopping=10, ema=ema)) for ema, m in models.items()}
    assert [m["train_loss"] for m in hist[0.0]["per_epoch"]] == [m["train_loss"] for m in hist[0.9]["per_epoch"]]
    assert hist[0.0]["per_epoch"][-1]["val_loss"] != hist[0.9]["per_epoch"][-1]["val_loss"]
    val = torch.as_tensor(hist[0.9]["val_idx"], device=training_device())
    with torch.no_grad():
        loss = nn.functional.cross_entropy(models[0.9].to(X.device)(X[val]), torch.as_tensor(y, device=X.device)[val])
    assert float(loss) == pytest.approx(hist[0.9]["val_loss"], rel=1e-5)


def test_xavier_init_changes_the_initial_weight_distribution():
    X, y = _task(d=400)
    std = {}
    for init in ("default", "xavier"):
        model = nn.Sequential(nn.Linear(400, 300), nn.ReLU(), nn.Linear(300, 2))
        fit(model, _forward(X), y, 2, TrainOptions(epochs=1, lr=1e-9, init=init, optimizer="sgd", weight_decay=0.0))
        std[init] = float(model[0].weight.detach().std())
    assert std["default"] == pytest.approx(1 / np.sqrt(400) / np.sqrt(3), rel=0.05)  # PyTorch's kaiming-uniform
    assert std["xavier"] == pytest.approx(np.sqrt(6 / 700) / np.sqrt(3), rel=0.05)
    assert model[0].bias.abs().max() < 1e-6, "xavier zeroes the biases"


def test_class_weighted_decides_whether_the_loss_is_weighted():
    X, y = _task()
    y = np.where(np.arange(len(y)) < 60, 0, y)  # imbalanced
    given = np.array([0.3, 3.0])

    def trained(class_weighted, class_weight):
        model = _mlp()
        h = fit(model, _forward(X), y, 2, TrainOptions(epochs=3, class_weighted=class_weighted), class_weight=class_weight)
        return _params(model), h["per_epoch"][0]["train_loss"]

    plain, plain_loss = trained(None, None)
    assert torch.equal(trained(False, given)[0], plain), "False ignores the weights passed in"
    assert torch.equal(trained(None, given)[0], trained(True, given)[0]), "None and True use the weights passed in"
    assert not torch.equal(trained(None, given)[0], plain)
    balanced = trained(True, None)
    assert torch.equal(balanced[0], trained(None, balanced_class_weight(y, 2))[0]), "True without weights: balanced"
    assert balanced[1] != plain_loss


def test_hidden_labels_are_left_out_without_a_semi_supervised_method():
    X, y = _task(n=100)
    seen = set()

    def forward(model, idx):
        seen.update(idx.tolist())
        return model(X[idx])

    h = fit(_mlp(), forward, y, 2, TrainOptions(epochs=2, hidden_label_fraction=0.8), seed=3)
    hidden = set(h["hidden_idx"].tolist())
    assert len(hidden) == 80 and not hidden & seen and len(seen) == 20
    assert list(np.bincount(y[h["hidden_idx"]])) == list(np.round(0.8 * np.bincount(y)).astype(int))


def _moons_accuracy(seed, method):
    X, y = make_moons(50, noise=0.1, random_state=seed)
    Xte, yte = make_moons(2000, noise=0.1, random_state=100 + seed)
    Xt = torch.as_tensor(X, dtype=torch.float32, device=training_device())
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(model, idx, noise=0.0):
        x = Xt[idx]
        return model(x + noise * torch.randn_like(x))

    fit(model, forward, y, 2, TrainOptions(epochs=150, hidden_label_fraction=0.8, semi_supervised=method), seed=seed)
    with torch.no_grad():
        return float((model(torch.as_tensor(Xte, dtype=torch.float32)).argmax(1).numpy() == yte).mean())


def test_mean_teacher_with_80_percent_labels_hidden_beats_training_on_the_labelled_20_percent():
    """Two moons, 50 samples, 10 labelled: the unlabelled samples show where the gap between the
    classes lies. Both arms see the same 10 labels (same seed, same hidden split)."""
    supervised = np.array([_moons_accuracy(s, "none") for s in range(6)])
    teacher = np.array([_moons_accuracy(s, "mean_teacher") for s in range(6)])
    assert (teacher > supervised).sum() >= 5, (supervised, teacher)
    assert teacher.mean() > supervised.mean() + 0.03, (supervised, teacher)


def test_mean_teacher_learns_from_the_unlabelled_samples_through_the_consistency_loss():
    X, y = _task(n=100)
    opts = dict(epochs=5, batch_size=32, semi_supervised="mean_teacher", hidden_label_fraction=0.8)
    hidden = fit(_mlp(dropout=0.2), _forward(X), y, 2, TrainOptions(**opts))["hidden_idx"]
    changed = X.clone()
    changed[hidden] = -changed[hidden]  # other contents for the unlabelled samples only

    def trained(X, consistency):
        model = _mlp(dropout=0.2)

        def forward(model, idx, noise=0.0):
            x = X[idx]
            return model(x + noise * torch.randn_like(x))

        fit(model, forward, y, 2, TrainOptions(consistency=consistency, **opts))
        return _params(model)

    assert torch.equal(trained(X, 0.0), trained(changed, 0.0)), "without consistency they carry nothing"
    assert not torch.allclose(trained(X, 10.0), trained(changed, 10.0)), "the consistency loss reaches them"


def test_fit_poolers_trains_a_mean_teacher_with_input_noise():
    bags, y = _two_modality_bags()
    runs = {}
    for noise in (0.0, 0.5):
        poolers = _poolers(0, 0.0)
        h = fit_poolers(poolers, bags, y, 2, epochs=5, semi_supervised="mean_teacher", hidden_label_fraction=0.5,
                        noise=noise)
        runs[noise] = _state(poolers)
    assert len(h["hidden_idx"]) == np.round(0.5 * np.bincount(y)).sum()
    assert all(torch.isfinite(t).all() for t in runs[0.5].values())
    assert not torch.equal(runs[0.0][("a", "V.weight")], runs[0.5][("a", "V.weight")]), "the noise reaches the bags"


def test_pooling_training_options_from_a_space_reach_the_pooler_training():
    """The options are pooling parameters in a space; evaluate passes them to fit_poolers."""
    from tests.tests_helpers import make_bags
    from trainables.pipeline import TrialData, evaluate

    X, mask, y, _ = make_bags(90, seed=2, n_inst=6, d=6)
    data = TrialData(y=y, groups=np.array([f"P{i}" for i in range(len(y))]), class_names=("a", "b"),
                     modalities=["img"], bags={"img": (X, mask)})

    def proba(**opts):
        (r,) = evaluate({"head": "logreg", "pooling": {"name": "attention", "attention": {"hidden_dim": 8, **opts}}},
                        data, n_folds=3).values()
        return r["proba"]

    base = proba()
    for opts in ({"epochs": 2}, {"grad_clip": 1e-3}, {"semi_supervised": "mean_teacher", "hidden_label_fraction": 0.5},
                 {"init": "xavier"}, {"schedule": "cosine"}):
        assert not np.allclose(proba(**opts), base), opts


class _WithSpare(nn.Module):
    """An MLP with a layer that only some steps use: torch.optim skips a parameter without a gradient."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
        self.spare = nn.Linear(6, 3)

    def forward(self, x, use_spare):
        return self.body(x) + (self.spare(x) if use_spare else 0)


@pytest.mark.parametrize("name,wd", [("adamw", 1e-2), ("adam", 1e-3), ("adamw", 0.0)])
def test_flat_adam_computes_what_torch_optim_computes_bit_for_bit(name, wd):
    """FlatAdam (trainables.training) against torch.optim on identical models, including steps where
    one layer gets no gradient (torch.optim skips it and its step count waits), then ``release``
    gives every parameter its own storage again (safetensors refuses shared storage)."""
    from safetensors.torch import save

    from trainables.training import FlatAdam

    torch.manual_seed(0)
    ref = _WithSpare()
    ours = copy.deepcopy(ref)
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    opt_ref = (torch.optim.AdamW if name == "adamw" else torch.optim.Adam)(ref.parameters(), lr=1e-2, weight_decay=wd)
    opt = FlatAdam(list(ours.parameters()), lr=1e-2, weight_decay=wd, decoupled=name == "adamw")
    for step in range(12):
        use_spare = step % 3 == 0 or step > 8
        for model, o in ((ref, opt_ref), (ours, opt)):
            o.zero_grad()
            nn.functional.cross_entropy(model(x, use_spare), y).backward()
            o.step()
        assert all(torch.equal(a, b) for a, b in zip(ref.parameters(), ours.parameters())), f"step {step}"
    opt.release()
    ptrs = {p.untyped_storage().data_ptr() for p in ours.parameters()}
    assert len(ptrs) == len(list(ours.parameters())), "parameters still share the flat buffer"
    save({k: v.contiguous() for k, v in ours.state_dict().items()})  # raises on shared storage
    assert all(torch.equal(a, b) for a, b in zip(ref.parameters(), ours.parameters()))


def test_flat_adam_applies_only_where_it_matches_torch_optim():
    from trainables.training import FlatAdam

    params = list(nn.Linear(3, 2).parameters())
    assert FlatAdam.usable(params, TrainOptions())
    assert FlatAdam.usable(params, TrainOptions(optimizer="adam"))
    assert not FlatAdam.usable(params, TrainOptions(optimizer="sgd"))
    assert not FlatAdam.usable(params, TrainOptions(schedule="cosine")), "schedulers need a torch.optim optimizer"
    assert not FlatAdam.usable([p.double() for p in params], TrainOptions())


def test_trial_models_train_without_importing_torch_dynamo():
    """torch.optim's first step imports torch._dynamo (about 3 s, once per worker process); the MLP
    head and the poolers train through FlatAdam and never pay it. In a fresh process."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, torch\n"
        "from trainables.heads import TorchMLPClassifier\n"
        "from trainables.pooling import AttentionPool, fit_poolers\n"
        "from tests_helpers import make_bags\n"
        "X, m, y, _ = make_bags(30, 3)\n"
        "TorchMLPClassifier(epochs=2).fit(X[:, 0], y)\n"
        "fit_poolers({'a': AttentionPool(8, 16)}, {'a': (X, m)}, y, 2, epochs=2)\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'\n"
        "print('ok')\n")
    import os
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
