"""One trial's work, without Ray: cached embeddings -> per fold (standardise -> pool -> fuse ->
sample -> head) -> out-of-fold probabilities -> metrics.

Everything learned is fitted on the fold's training part only: the instance standardisation, the
attention poolings, the tabular imputation and scaling, the resampling and the head. The scored
part is only ever transformed.

A trial config looks like::

    {"encoder": "resnet18", "preprocessing": "grayscale_norm", "pca_dim": 64, "pooling": {"name": "attention",
     "attention": {"hidden_dim": 64}}, "fusion": "concat", "sampling": "class_weight",
     "head": {"name": "logreg", "logreg": {"C": 0.1}}, "tabular": True}

``arms`` runs the same config once per value of one dimension (the compared one, e.g. every
pooling), on the same folds: the paired design the report's comparison tables rely on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .fusion import FUSIONS
from .heads import HEADS, fit_head, predict_proba_full
from .metrics import METRICS, compute_metrics, objective_metrics
from .pooling import POOLINGS, fit_poolers, pool
from .registry import build, split_spec
from .sampling import SAMPLINGS, balanced_class_weight
from .splits import grouped_folds
from .tabular import TABULAR, normalise as tabular_spec
from .training import TRAIN_OPTION_NAMES


@dataclass
class TrialData:
    """What a trial needs, built once per worker process from the cohort and the cache."""

    y: np.ndarray  # (n,) class index
    groups: np.ndarray  # (n,) pseudonymous patient id
    class_names: tuple[str, ...]
    modalities: list[str]
    bags: dict[str, tuple[np.ndarray, np.ndarray]]  # modality -> (X (n, N, D), mask (n, N))
    tabular: pd.DataFrame | None = None  # (n, T) raw, NaN allowed
    texts: pd.DataFrame | None = None  # (n, K) raw text columns ("" where empty)
    extra: dict = field(default_factory=dict)
    Y: np.ndarray | None = None  # (n, T) class index per target, -1 = masked: a multi-target trial
    targets: list[tuple[str, tuple[str, ...]]] | None = None  # [(target, classes)] matching Y's columns


def build_bags(embeddings: np.ndarray, index: pd.DataFrame, sample_ids: list[str], modalities: list[str]):
    """Group instance embeddings into padded bags per modality: (n, N_max, D) and a mask (n, N_max)."""
    pos = {s: k for k, s in enumerate(sample_ids)}
    idx = index.reset_index(drop=True)
    bags = {}
    for m in modalities:
        rows = idx[idx["modality"] == m]
        rows = rows.sort_values(["sample_id", "order"], kind="stable")
        counts = rows.groupby("sample_id", sort=False).size()
        n_max = int(counts.max()) if len(counts) else 1
        X = np.zeros((len(sample_ids), n_max, embeddings.shape[1]), dtype=np.float32)
        mask = np.zeros((len(sample_ids), n_max), dtype=bool)
        for sid, grp in rows.groupby("sample_id", sort=False):
            if sid not in pos:
                continue
            k = len(grp)
            X[pos[sid], :k] = embeddings[grp.index.to_numpy()]
            mask[pos[sid], :k] = True
        bags[m] = (X, mask)
    return bags


def _standardise(bags, train, pca_dim: int = 0):
    """Per-modality standardisation, then (``pca_dim`` > 0) whitened projection on the top principal
    components, both fitted on the training samples' real instances only, and applied to every
    real instance (padding stays zero)."""
    return {m: _apply(X, mask, _fit_standardiser(X, mask, train, pca_dim)) for m, (X, mask) in bags.items()}


EIG_KEEP = 64  # leading eigenpairs kept per fold and modality: every pca_dim up to this reuses one eigh


def _fit_moments(X: np.ndarray, mask: np.ndarray, train: np.ndarray, pca_dim: int):
    """``(mu (D,), sd (D,), evals (j,), evecs (D, j), n)`` fitted on the real instances of the ``train``
    samples of one modality's bag ``X`` (n, N, D), ``mask`` (n, N): the leading ``j = min(D,
    max(pca_dim, EIG_KEEP))`` eigenpairs (descending) of the standardised instances' covariance, which
    :func:`_project` turns into any ``pca_dim <= j``; evals/evecs None without ``pca_dim`` or with
    fewer than 2 instances. Memory: one copy of those instances and one temporary of the same size."""
    rows, slots = np.nonzero(mask[train])  # row-major: the order X[train][mask[train]] would give
    real_tr = X[train[rows], slots]  # (n_inst_train, D)
    del rows, slots
    n, D = len(real_tr), X.shape[-1]
    if n < 2:
        mu, sd = np.zeros(D, np.float32), np.ones(D, np.float32)
    else:
        mu, sd = real_tr.mean(0), real_tr.std(0) + 1e-6
    if not (pca_dim and pca_dim < D and n > pca_dim):
        return mu, sd, None, None, n
    R = np.subtract(real_tr, mu, out=real_tr)  # in place: (real_tr - mu) / sd, without two more copies
    R /= sd
    evals, evecs = np.linalg.eigh(R.T @ R / len(R))  # ascending
    del R, real_tr
    j = min(D, max(pca_dim, EIG_KEEP))
    return mu, sd, evals[::-1][:j].copy(), evecs[:, ::-1][:, :j].copy(), n


def _project(moments, pca_dim: int):
    """``(mu, sd, P (D, k) or None)`` from :func:`_fit_moments`' result: standardise and project on the
    whitened top ``pca_dim`` components in one matmul; None when PCA does not apply."""
    mu, sd, evals, evecs, n = moments
    D = len(mu)
    if not (pca_dim and pca_dim < D and n > pca_dim) or evecs is None:
        return mu, sd, None
    W = evecs[:, :pca_dim] / np.sqrt(np.maximum(evals[:pca_dim], 1e-6))  # whitened
    return mu, sd, (W / sd[:, None]).astype(np.float32)  # (D, k)


def _serves(moments, pca_dim: int) -> bool:
    """Whether :func:`_fit_moments`' result holds what ``pca_dim`` needs (enough eigenpairs where PCA applies)."""
    mu, _sd, _evals, evecs, n = moments
    applies = pca_dim and pca_dim < len(mu) and n > pca_dim
    return not applies or (evecs is not None and evecs.shape[1] >= pca_dim)


def _fit_standardiser(X: np.ndarray, mask: np.ndarray, train: np.ndarray, pca_dim: int):
    """``(mu (D,), sd (D,), P (D, k) or None)`` fitted on the real instances of the ``train`` samples of
    one modality's bag ``X`` (n, N, D), ``mask`` (n, N) (:func:`_fit_moments`, :func:`_project`)."""
    return _project(_fit_moments(X, mask, train, pca_dim), pca_dim)


def _apply(X: np.ndarray, mask: np.ndarray, fitted) -> tuple[np.ndarray, np.ndarray]:
    """A fitted standardiser applied to every real instance of ``X`` (n, N, D): ``(Z, mask)``, Z (n, N, k)
    or (n, N, D), padding zero. Memory: Z and one copy of the real instances (``X`` may be read-only,
    e.g. shared through Ray's object store)."""
    mu, sd, P = fitted
    A = X[mask]  # (n_inst, D), a copy
    A -= mu
    if P is not None:
        Z = np.zeros((*mask.shape, P.shape[1]), np.float32)  # (n, N, k)
        Z[mask] = A @ P
    else:
        A /= sd
        Z = np.zeros(X.shape, np.float32)  # (n, N, D)
        Z[mask] = A
    return Z, mask


def _fold_bags(data: TrialData, train: np.ndarray, pca_dim: int):
    """``_standardise`` with its fitted part memoised per worker process: it depends only on the fold's
    training part and ``pca_dim``, so trials on a reused actor (and the arms of one trial) share it.
    Only the fitted statistics and projections (a few kB a modality) and, per fold, the leading
    eigenpairs (``EIG_KEEP`` x D float64, 256 kB at D=512: one eigh serves every ``pca_dim``) are kept,
    never standardised bags: those are rebuilt from the bags on each use."""
    if not pca_dim:
        return _standardise(data.bags, train, 0)
    memo = data.extra.setdefault("fold_bags", {})
    moments = data.extra.setdefault("fold_moments", {})  # one eigh per fold and modality, every pca_dim <= EIG_KEEP
    fold = hashlib.blake2b(np.ascontiguousarray(train).tobytes(), digest_size=8).hexdigest()
    key = (pca_dim, fold)
    if key not in memo:
        if len(memo) >= 16:  # a few folds x a few PCA sizes; keep memory bounded
            memo.clear()
        mom = moments.get(fold)
        if mom is None or not all(_serves(v, pca_dim) for v in mom.values()):
            if len(moments) >= 16:
                moments.clear()
            mom = moments[fold] = {m: _fit_moments(X, mask, train, pca_dim) for m, (X, mask) in data.bags.items()}
        memo[key] = {m: _project(mom[m], pca_dim) for m in data.bags}
    return {m: _apply(X, mask, memo[key][m]) for m, (X, mask) in data.bags.items()}


def _fitted_poolers(data: TrialData, poolers: dict, bags: dict, tr: np.ndarray, y_fit: np.ndarray, n_classes: int,
                    cw: np.ndarray | None, seed: int, pca_dim: int, spec: tuple) -> dict:
    """``fit_poolers`` on the fold's training part, memoised per worker process (in ``data.extra``).

    A learned pooler depends only on the fold's bags (its training part and ``pca_dim``), its labels,
    the pooling and its training options (``spec``), the class weights and the seed, not on the head
    or the resampling the trial fits after it: trials on a reused actor that differ only there (most
    of a sweep) get the poolers fitted by the first one, bit-identical, and the torch RNG state that
    fitting left behind. ``poolers`` are freshly built (initialised from ``seed``); returned fitted."""
    import copy

    if not any(p.learnable for p in poolers.values()):
        return poolers
    memo = data.extra.setdefault("fitted_poolers", {})
    h = hashlib.blake2b(digest_size=16)
    for part in (np.ascontiguousarray(tr), np.ascontiguousarray(y_fit[tr]), None if cw is None else np.asarray(cw)):
        h.update(b"-" if part is None else part.tobytes())
    h.update(repr((pca_dim, seed, n_classes, sorted(poolers), spec[0], sorted(spec[1].items()), sorted(spec[2].items()),
                   [(m, p.in_dim) for m, p in poolers.items()])).encode())
    key = h.hexdigest()
    if key in memo:
        fitted, rng = memo[key]
        torch.set_rng_state(rng)  # as if fitted here: whatever draws from the global RNG next sees the same state
        return copy.deepcopy(fitted)
    fit_poolers(poolers, {m: (b[0][tr], b[1][tr]) for m, b in bags.items()}, y_fit[tr], n_classes,
                class_weight=cw, seed=seed, **spec[2])
    if len(memo) >= 64:  # a few folds x PCA sizes x class weightings; keep memory bounded
        memo.clear()
    memo[key] = copy.deepcopy(poolers), torch.get_rng_state()
    return poolers


def arm_specs(config: dict, arms: dict[str, list[str]] | None) -> dict[str, tuple[str, dict, dict]]:
    """{arm: (pooling name, pooling params, pooler training options)}: one arm per compared pooling."""
    arm_dim, arm_values = next(iter(arms.items())) if arms else (None, [None])
    if arm_dim not in (None, "pooling"):
        raise ValueError(f"comparing arms over {arm_dim!r} is not supported; only 'pooling'")
    pool_spec = config.get("pooling", "mean")  # irrelevant without image modalities
    out = {}
    for arm in arm_values:
        if arm is not None:
            _, params = split_spec({**(pool_spec if isinstance(pool_spec, dict) else {}), "name": arm})
            spec_arm = {"name": arm, arm: params}
        else:
            spec_arm = pool_spec
        name, params = split_spec(spec_arm, "pooling")
        train_opts = {k: params.pop(k) for k in list(params) if k in TRAIN_OPTION_NAMES}  # training options, not constructor args
        out[arm if arm is not None else name] = (name, params, train_opts)
    return out


def _features(config: dict, data: TrialData, specs: dict, folds, seed: int, y_fit: np.ndarray | None,
              n_classes: int, class_weight_fn):
    """Per fold and arm: everything up to the fused feature matrix, learned parts fitted on the fold's
    training part only. Yields (fold, train, test, arm, X, vectors, presence, fusion, poolers, bags).

    ``y_fit`` are the labels the learned parts (attention poolings, learned fusions) train on; ``None``
    (several targets) forbids learned parts rather than training them on one target for all."""
    fusion = build(FUSIONS, config.get("fusion", "concat"), "fusion")
    tabular = build(TABULAR, tabular_spec(config.get("tabular", False)), "tabular") if data.tabular is not None else None
    text_spec = config.get("text")
    pca_dim = int(config.get("pca_dim", 0) or 0)
    for f, (tr, te) in enumerate(folds):
        bags = _fold_bags(data, tr, pca_dim)  # shared by every arm of this fold
        presence = (np.stack([bags[m][1].any(1) for m in data.modalities], 1) if data.modalities
                    else np.zeros((len(data.groups), 0), bool))  # (n, M)
        tab = tabular.fit_transform(data.tabular, tr, seed + f) if tabular is not None else None
        txt = text_features(text_spec, data, tr, seed + f) if text_spec else None
        cw = class_weight_fn(tr)
        for arm, (pool_name, pool_params, train_opts) in specs.items():
            torch.manual_seed(seed + f)  # pooler init is part of the trial: reproducible from the seed
            poolers = {m: build(POOLINGS, {"name": pool_name, pool_name: pool_params}, "pooling",
                                in_dim=bags[m][0].shape[-1]) for m in data.modalities}
            if y_fit is None and any(p.learnable for p in poolers.values()):
                raise ValueError(f"pooling {pool_name!r} is learned; with several targets in one trial use a fixed "
                                 "pooling (mean or max), or one target per sweep")
            if y_fit is not None:
                poolers = _fitted_poolers(data, poolers, bags, tr, y_fit, n_classes, cw, seed + f, pca_dim,
                                          (pool_name, pool_params, train_opts))
            vectors = {m: pool(poolers[m], *bags[m]) for m in data.modalities}
            pres = presence
            if txt is not None:  # text and tabular join the image modalities as vectors to fuse
                vectors["text"] = txt
                pres = np.concatenate([pres, (data.texts != "").any(axis=1).to_numpy()[:, None]], 1)
            if tab is not None:
                vectors["tabular"] = tab
                pres = np.concatenate([pres, np.ones((len(data.groups), 1), bool)], 1)
            if not vectors:
                raise ValueError("this trial has no features: no image modality, tabular is 'none' and no text")
            ctx = _instance_context(fusion, data, bags, text_spec)  # fusions that read slices and words themselves
            if hasattr(fusion, "fit"):  # learned fusions: fitted on the fold's training part only
                if y_fit is None:
                    raise ValueError("learned fusions need one target; with several targets use fusion 'concat'")
                fusion.fit({m: v[tr] for m, v in vectors.items()}, pres[tr], y_fit[tr], n_classes,
                           class_weight=cw, seed=seed + f, **_rows(ctx, tr))
            X = fusion.fuse(vectors, pres, **ctx)
            yield f, tr, te, arm, X, vectors, pres, fusion, poolers, bags


def evaluate(config: dict, data: TrialData, *, arms: dict[str, list[str]] | None = None, n_folds: int = 5,
             seed: int = 0, on_fold: Callable[[int, int, dict[str, dict]], None] | None = None) -> dict[str, dict]:
    """Run the config (once per arm) over patient-grouped folds; returns {arm: {"proba", "metrics", "fold_metrics"}}.

    ``on_fold(folds_done, n_folds, partial)``, if given, is called after each fold (every arm of it),
    ``n_folds`` times: ``partial`` is {arm: {"metrics", "fold_metrics"}} over the samples scored so
    far (out of fold), shaped for :func:`flatten`; after the last fold its metrics are the final ones.
    It changes nothing in the results."""
    if data.Y is not None:
        return evaluate_multi(config, data, arms=arms, n_folds=n_folds, seed=seed, on_fold=on_fold)
    seed = seed + int(config.get("__trial_index__", 0) or 0)  # repeats (Tune's Repeater) vary folds and inits
    n_classes = len(data.class_names)
    folds = grouped_folds(data.y, data.groups, n_folds, seed)
    sampling = build(SAMPLINGS, config.get("sampling", "none"), "sampling")
    head = build(HEADS, config["head"], "head", seed=seed)
    missing_eval = sorted(float(x) for x in config.get("missing_eval", []) or [])
    specs = arm_specs(config, arms)

    def class_weight(tr):
        return balanced_class_weight(data.y[tr], n_classes) if getattr(sampling, "uses_class_weight", False) else None

    proba = {a: np.zeros((len(data.y), n_classes)) for a in specs}
    fold_metrics = {a: [] for a in specs}
    last_arm = list(specs)[-1]
    attention = {}  # (arm, modality) -> (n, N) out-of-fold attention weights of learnable poolings
    missing = {}  # (arm, modality, fraction) -> (n, C) out-of-fold probabilities with the modality removed at test time
    for f, tr, te, arm, X, vectors, pres, fusion, poolers, bags in _features(
            config, data, specs, folds, seed, data.y, n_classes, class_weight):
        for m, p in poolers.items():
            if p.learnable:
                w = attention.setdefault((arm, m), np.full(bags[m][1].shape, np.nan, np.float32))
                with torch.inference_mode():
                    a = p.weights(torch.as_tensor(bags[m][0][te]), torch.as_tensor(bags[m][1][te])).numpy()
                w[te] = np.where(bags[m][1][te], a, np.nan)
        Xtr, ytr, w = sampling.resample(X[tr], data.y[tr], seed + f)
        model = fit_head(head, Xtr, ytr, w)
        proba[arm][te] = predict_proba_full(model, X[te], n_classes)
        fold_metrics[arm].append(compute_metrics(data.y[te], proba[arm][te], data.class_names))
        for k, m in enumerate(vectors):  # simulated missingness: the trained model, a modality removed at test time
            if m == "tabular" or not missing_eval:
                continue
            rng = np.random.default_rng(seed + f * 1000 + k)
            u = rng.random(len(te))  # nested removals: a sample removed at 25% is also removed at 50%
            for frac in missing_eval:
                pres_m = pres.copy()
                pres_m[te[u < frac], k] = False
                ctx = _instance_context(fusion, data, bags, config.get("text"), absent=(m, te[u < frac]))
                Xm = fusion.fuse({q: np.where(pres_m[:, j:j + 1], v, 0) for j, (q, v) in enumerate(vectors.items())},
                                 pres_m, **ctx)
                out = missing.setdefault((arm, m, frac), np.zeros((len(data.y), n_classes)))
                out[te] = predict_proba_full(model, Xm[te], n_classes)
        if on_fold is not None and arm == last_arm:  # every arm of fold f done: the running out-of-fold metrics
            scored = np.sort(np.concatenate([folds[k][1] for k in range(f + 1)]))
            on_fold(f + 1, len(folds), {a: {"metrics": compute_metrics(data.y[scored], proba[a][scored], data.class_names),
                                            "fold_metrics": list(fold_metrics[a])} for a in specs})
    return {a: {"proba": proba[a], "metrics": compute_metrics(data.y, proba[a], data.class_names),
                "fold_metrics": fold_metrics[a], "attention": {m: w for (b, m), w in attention.items() if b == a},
                "missing": {(m, frac): compute_metrics(data.y, pm, data.class_names)
                            for (b, m, frac), pm in missing.items() if b == a}}
            for a in specs}


def evaluate_multi(config: dict, data: TrialData, *, arms: dict[str, list[str]] | None = None, n_folds: int = 5,
                   seed: int = 0, on_fold: Callable[[int, int, dict[str, dict]], None] | None = None) -> dict[str, dict]:
    """Several targets in one trial (RSNA's 25, CheXpert's 14): the same features, one head per target,
    each fitted on the fold's training samples labelled for that target (masked labels, -1, are left
    out of training and of scoring). Metrics per target (``target/<name>/<metric>``) and their mean
    over targets as the trial's ``accuracy``, ``f1_macro``, ``auc_macro``, ``balanced_accuracy``.

    ``proba`` is {target: (n, C_t)}, out of fold for every sample (a sample not labelled for a target
    is still predicted for it, but never scored on it). ``on_fold`` as for :func:`evaluate`."""
    seed = seed + int(config.get("__trial_index__", 0) or 0)
    Y, names = data.Y, [t for t, _ in data.targets]
    folds = grouped_folds(Y[:, 0], data.groups, n_folds, seed)  # stratified on the first target (masked: own stratum)
    sampling = build(SAMPLINGS, config.get("sampling", "none"), "sampling")
    head = build(HEADS, config["head"], "head", seed=seed)
    specs = arm_specs(config, arms)
    classes = dict(data.targets)
    proba = {a: {t: np.full((len(Y), len(classes[t])), np.nan) for t in names} for a in specs}
    last_arm = list(specs)[-1]
    for f, tr, te, arm, X, *_ in _features(config, data, specs, folds, seed, None, 0, lambda tr: None):
        for k, t in enumerate(names):
            n_c = len(classes[t])
            lab = tr[Y[tr, k] >= 0]
            y_t = Y[lab, k]
            if len(np.unique(y_t)) < 2:  # one class (or none) labelled in this fold: predict its prior
                prior = np.bincount(y_t, minlength=n_c) + 1.0
                proba[arm][t][te] = prior / prior.sum()
                continue
            Xtr, ytr, w = sampling.resample(X[lab], y_t, seed + f)
            if getattr(sampling, "uses_class_weight", False) and w is None:
                w = balanced_class_weight(y_t, n_c)[ytr]
            proba[arm][t][te] = predict_proba_full(fit_head(head, Xtr, ytr, w), X[te], n_c)
        if on_fold is not None and arm == last_arm:  # every arm of fold f done: the running out-of-fold metrics
            scored = np.sort(np.concatenate([folds[k][1] for k in range(f + 1)]))
            partial = {}
            for a in specs:
                metrics, per_fold = _multi_metrics(Y[scored], {t: p[scored] for t, p in proba[a].items()}, names, classes,
                                                   Y, proba[a], folds[:f + 1])
                partial[a] = {"metrics": metrics, "fold_metrics": per_fold}
            on_fold(f + 1, len(folds), partial)
    out = {}
    for a in specs:
        metrics, per_fold = _multi_metrics(Y, proba[a], names, classes, Y, proba[a], folds)
        out[a] = {"proba": proba[a], "metrics": metrics, "fold_metrics": per_fold, "attention": {}, "missing": {}}
    return out


def _multi_metrics(Y: np.ndarray, proba: dict[str, np.ndarray], names: list[str], classes: dict, Y_all: np.ndarray,
                   proba_all: dict[str, np.ndarray], folds) -> tuple[dict, list[dict]]:
    """One arm's metrics over the rows of ``Y`` (n', T) and ``proba`` {target: (n', C_t)} (every sample,
    or those scored so far), and per fold of ``folds`` (indices into ``Y_all`` / ``proba_all``)."""
    metrics, per_fold = {}, []
    for k, t in enumerate(names):
        lab = Y[:, k] >= 0
        for key, v in compute_metrics(Y[lab, k], proba[t][lab], classes[t]).items():
            metrics[f"target/{t}/{key}"] = v
        metrics[f"target/{t}/n"] = int(lab.sum())
    for key in METRICS:
        metrics[key] = float(np.nanmean([metrics[f"target/{t}/{key}"] for t in names]))
    metrics.update(objective_metrics(names, classes, Y, proba))  # e.g. the RSNA 2024 score (lumbar targets)
    for tr, te in folds:
        fm = {}
        for key in METRICS:
            vals = []
            for k, t in enumerate(names):
                lab = te[Y_all[te, k] >= 0]
                if len(lab):
                    vals.append(compute_metrics(Y_all[lab, k], proba_all[t][lab], classes[t])[key])
            fm[key] = float(np.nanmean(vals)) if vals else float("nan")
        per_fold.append(fm)
    return metrics, per_fold


def _instance_context(fusion, data: TrialData, bags: dict, text_spec, absent: tuple | None = None) -> dict:
    """For a fusion with ``uses_instances``: the standardised instance bags {modality: (X, mask)} and the
    samples' texts (joined and preprocessed with the space's text steps), for every sample. ``absent``
    = (modality, rows) removes that modality for those rows (simulated missingness)."""
    if not getattr(fusion, "uses_instances", False):
        return {}
    from .text_features import joined_texts

    texts = None
    if data.texts is not None:
        steps = list(text_spec.get("steps", [])) if isinstance(text_spec, dict) else []
        memo = data.extra.setdefault("texts_joined", {})
        texts = memo.setdefault(repr(steps), joined_texts(data.texts, steps))
    ctx_bags = dict(bags)
    if absent is not None:
        m, rows = absent
        if m == "text" and texts is not None:
            texts = list(texts)
            for i in rows:
                texts[i] = ""
        elif m in ctx_bags:
            X, mask = ctx_bags[m]
            mask = mask.copy()
            mask[rows] = False
            ctx_bags[m] = (X, mask)
    return {"bags": ctx_bags, "texts": texts}


def _rows(ctx: dict, rows: np.ndarray) -> dict:
    if not ctx:
        return {}
    return {"bags": {m: (X[rows], mask[rows]) for m, (X, mask) in ctx["bags"].items()},
            "texts": None if ctx["texts"] is None else [ctx["texts"][i] for i in rows]}


def text_features(spec, data: TrialData, train: np.ndarray, seed: int) -> np.ndarray:
    """Text columns -> (n, d) features, any learned part fitted on ``train`` only."""
    from .text_features import fold_text_features

    return fold_text_features(spec, data, train, seed)


def flatten(results: dict[str, dict], metric: str, mode: str = "max") -> dict[str, float]:
    """Tune-reportable flat dict: the objective (best arm), and every arm's metrics and fold spread."""
    pick = max if mode == "max" else min
    best_arm = pick(results, key=lambda a: np.nan_to_num(results[a]["metrics"][metric], nan=-np.inf if mode == "max" else np.inf))
    out: dict[str, float] = {k: v for k, v in results[best_arm]["metrics"].items()}
    out["best_arm"] = best_arm
    for arm, r in results.items():
        for k, v in r["metrics"].items():
            out[f"arm/{arm}/{k}"] = v
        for k in METRICS:
            vals = np.array([fm[k] for fm in r["fold_metrics"]], dtype=float)
            out[f"arm/{arm}/{k}_fold_sd"] = float(np.nanstd(vals))
        for (m, frac), mets in r.get("missing", {}).items():
            for k in ("f1_macro", "auc_macro", "balanced_accuracy"):
                out[f"arm/{arm}/missing/{m}/{frac:g}/{k}"] = mets[k]
    return out
