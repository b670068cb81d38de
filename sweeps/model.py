"""The chosen configuration as a model: fitted on the development part, saved, loaded, applied.

A ``Model`` is one configuration of a frozen-encoder sweep (encoder, preprocessing, PCA size, one
pooling arm, fusion, tabular preprocessing, sampling, head) with every learned part fitted on the
samples it is given, exactly as a trial fits them on a fold's training part (``Model.fit`` follows
``trainables.pipeline`` step by step, with the fold-0 seeds; a test holds their probabilities equal):

    bags (n, N, D) per modality -> standardise (+ whitened PCA) -> pool -> fuse with tabular -> head

The artifact (``Model.save`` / ``load_model``), a folder:

- ``model.json``: format version, versions of the packages, the configuration, class names, the
  expected modalities and tabular columns, the encoder (name, preprocessing, input size, weights
  identity: a content hash, never a path), the pooling, fusion, tabular and head specs;
- ``tensors.safetensors``: the standardisers (mean, spread, PCA projection per modality), the
  poolers' weights, and an MLP head's weights;
- ``tabular.skops`` / ``head.skops``: the fitted scikit-learn parts (skops: no pickle; on load only
  types from an allow-list of scikit-learn, LightGBM, NumPy/SciPy and this project's heads are
  accepted).

``load_model`` refuses an artifact of another format, or one whose scikit-learn parts were written
by another scikit-learn minor version, with a message saying what to do (refit with ``finalize``).

Not exportable yet (``ModelError`` naming the part): text features, fusions with learned parts or
that read instances themselves (``attention``, ``cnn``, ``cross_attention``, ...), several targets,
fine-tuned encoders.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

FORMAT = 1  # bump when the artifact layout or the meaning of a stored part changes
MODEL_FILE = "model.json"
TENSORS_FILE = "tensors.safetensors"
TRUSTED_PREFIXES = ("sklearn.", "lightgbm.", "numpy.", "scipy.", "builtins.", "collections.", "trainables.heads.",
                    "imblearn.", "xgboost.")


class ModelError(ValueError):
    """A configuration that cannot become a model, or an artifact that cannot be used; the message says which part."""


class IncompatibleModelError(ModelError):
    """An artifact written by an incompatible version."""


@dataclass
class Standardiser:
    """Per-feature standardisation, then (``P`` given) the whitened projection on the top principal
    components, fitted on real instances only (``trainables.pipeline``'s fold transform)."""

    mu: np.ndarray  # (D,)
    sd: np.ndarray  # (D,)
    P: np.ndarray | None = None  # (D, k): standardise and project in one matmul

    @classmethod
    def fit(cls, X: np.ndarray, mask: np.ndarray, pca_dim: int = 0) -> "Standardiser":
        real = X[mask]  # (n_inst, D)
        if len(real) < 2:
            return cls(np.zeros(X.shape[-1], np.float32), np.ones(X.shape[-1], np.float32))
        mu, sd = real.mean(0), real.std(0) + 1e-6
        if pca_dim and pca_dim < X.shape[-1] and len(real) > pca_dim:
            R = (real - mu) / sd
            evals, evecs = np.linalg.eigh(R.T @ R / len(R))  # ascending
            W = evecs[:, ::-1][:, :pca_dim] / np.sqrt(np.maximum(evals[::-1][:pca_dim], 1e-6))
            return cls(mu, sd, (W / sd[:, None]).astype(np.float32))
        return cls(mu, sd)

    @property
    def out_dim(self) -> int:
        return self.P.shape[1] if self.P is not None else len(self.mu)

    def apply(self, X: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(n, N, D) -> (n, N, out_dim); padding stays zero."""
        Z = np.zeros((*mask.shape, self.out_dim), np.float32)
        Z[mask] = (X[mask] - self.mu) @ self.P if self.P is not None else (X[mask] - self.mu) / self.sd
        return Z

    def torch_apply(self, x: torch.Tensor) -> torch.Tensor:
        """The same map on a tensor of real instances (..., D), differentiable (Grad-CAM goes through it)."""
        mu = torch.as_tensor(self.mu, dtype=x.dtype, device=x.device)
        if self.P is not None:
            return (x - mu) @ torch.as_tensor(self.P, dtype=x.dtype, device=x.device)
        return (x - mu) / torch.as_tensor(self.sd, dtype=x.dtype, device=x.device)


@dataclass
class Prediction:
    """What a model says about ``n`` samples."""

    proba: np.ndarray  # (n, C)
    presence: dict[str, np.ndarray]  # modality -> (n,) bool
    attention: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> (n, N) weights, NaN = padding


def _arm_pooling(config: dict, arm: str | None) -> tuple[str, dict, dict]:
    """(pooling name, constructor params, training options) of one arm, as the trial builds it."""
    from trainables.registry import split_spec
    from trainables.training import TRAIN_OPTION_NAMES

    pool_spec = config.get("pooling", "mean")
    if arm is not None:
        _, params = split_spec({**(pool_spec if isinstance(pool_spec, dict) else {}), "name": arm})
        pool_spec = {"name": arm, arm: params}
    name, params = split_spec(pool_spec, "pooling")
    train_opts = {k: params.pop(k) for k in list(params) if k in TRAIN_OPTION_NAMES}
    return name, params, train_opts


class Model:
    """A fitted configuration. Build with ``Model.fit`` or ``load_model``; apply with ``predict``."""

    def __init__(self, meta: dict, standardisers: dict, poolers: dict, tabular, fusion, head):
        self.meta = meta
        self.standardisers = standardisers  # modality -> Standardiser
        self.poolers = poolers  # modality -> trainables.pooling pooler (eval mode)
        self.tabular = tabular  # a fitted trainables.tabular component, or None
        self.fusion = fusion
        self.head = head

    # -- what it expects -------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def modalities(self) -> list[str]:
        return list(self.meta["modalities"])

    @property
    def tabular_columns(self) -> list[str]:
        return list(self.meta["tabular_columns"])

    @property
    def encoder(self) -> dict | None:
        return self.meta.get("encoder")

    # -- fitting ---------------------------------------------------------------------------------
    @classmethod
    def fit(cls, config: dict, data, train: np.ndarray | None = None, *, arm: str | None = None, seed: int = 0,
            encoder: dict | None = None, extra: dict | None = None) -> "Model":
        """Fit ``config`` (pooling arm ``arm``) on ``data`` (a ``trainables.pipeline.TrialData``) rows
        ``train`` (default all), with the seeds a trial's first fold uses."""
        from trainables.fusion import FUSIONS
        from trainables.heads import HEADS, fit_head
        from trainables.pooling import POOLINGS, fit_poolers
        from trainables.registry import build
        from trainables.sampling import SAMPLINGS, balanced_class_weight
        from trainables.tabular import TABULAR
        from trainables.tabular import normalise as tabular_spec

        if data.Y is not None:
            raise ModelError("a sweep over several targets cannot be exported as one model yet; run one target per sweep")
        if config.get("text"):
            raise ModelError("text features cannot be exported yet (the space uses 'text')")
        tr = np.arange(len(data.y)) if train is None else np.asarray(train)
        seed = seed + int(config.get("__trial_index__", 0) or 0)
        n_classes = len(data.class_names)
        fusion = build(FUSIONS, config.get("fusion", "concat"), "fusion")
        if hasattr(fusion, "fit") or getattr(fusion, "uses_instances", False):
            raise ModelError(f"fusion {config.get('fusion')!r} has learned parts that cannot be exported yet; "
                             "export works with fusion 'concat'")
        tab_name = tabular_spec(config.get("tabular", False))
        tabular = build(TABULAR, tab_name, "tabular") if data.tabular is not None else None
        sampling = build(SAMPLINGS, config.get("sampling", "none"), "sampling")
        head = build(HEADS, config["head"], "head", seed=seed)
        pool_name, pool_params, train_opts = _arm_pooling(config, arm)
        pca_dim = int(config.get("pca_dim", 0) or 0)

        std = {m: Standardiser.fit(X[tr], mask[tr], pca_dim) for m, (X, mask) in data.bags.items()}
        bags = {m: (std[m].apply(X, mask), mask) for m, (X, mask) in data.bags.items()}
        tab = tabular.fit_transform(data.tabular, tr, seed) if tabular is not None else None
        if tab is None:
            tabular = None
        cw = balanced_class_weight(data.y[tr], n_classes) if getattr(sampling, "uses_class_weight", False) else None
        torch.manual_seed(seed)
        poolers = {m: build(POOLINGS, {"name": pool_name, pool_name: pool_params}, "pooling",
                            in_dim=bags[m][0].shape[-1]) for m in data.modalities}
        fit_poolers(poolers, {m: (b[0][tr], b[1][tr]) for m, b in bags.items()}, data.y[tr], n_classes,
                    class_weight=cw, seed=seed, **train_opts)
        for p in poolers.values():
            p.eval()
        meta = {
            "format": FORMAT, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "versions": _versions(),
            "config": json.loads(json.dumps(config, default=str)), "arm": arm, "seed": seed,
            "class_names": list(data.class_names), "modalities": list(data.modalities),
            "tabular_columns": list(data.tabular.columns) if tabular is not None else [],
            "encoder": encoder, "pca_dim": pca_dim,
            "pooling": {"name": pool_name, "params": pool_params, "dims": {m: int(s.out_dim) for m, s in std.items()}},
            "fusion": config.get("fusion", "concat"), "tabular": tab_name, "head": config["head"],
            "sampling": config.get("sampling", "none"), "n_train": int(len(tr)), **(extra or {}),
        }
        model = cls(meta, std, poolers, tabular, fusion, None)
        X = model.fused_features(bags_std=bags, tab=tab)
        Xtr, ytr, w = sampling.resample(X[tr], data.y[tr], seed)
        model.head = fit_head(head, Xtr, ytr, w)
        return model

    # -- applying --------------------------------------------------------------------------------
    def fused_features(self, bags_std: dict, tab: np.ndarray | None) -> np.ndarray:
        """The head's input (n, d): pooled standardised bags {m: (Z, mask)} and transformed tabular
        features, fused (a missing modality: an all-False mask row)."""
        from trainables.pooling import pool

        vectors = {m: pool(self.poolers[m], *bags_std[m]) for m in self.modalities}
        n = len(next(iter(bags_std.values()))[1]) if bags_std else len(tab)
        pres = (np.stack([bags_std[m][1].any(1) for m in self.modalities], 1) if self.modalities
                else np.zeros((n, 0), bool))
        if tab is not None:
            vectors["tabular"] = tab
            pres = np.concatenate([pres, np.ones((n, 1), bool)], 1)
        if not vectors:
            raise ModelError("this model has no features: no image modality and no tabular columns")
        return self.fusion.fuse(vectors, pres)

    def predict(self, bags: dict[str, tuple[np.ndarray, np.ndarray]], tabular: pd.DataFrame | None = None,
                n: int | None = None) -> Prediction:
        """Probabilities for samples given as raw embedding bags {modality: (X (n, N, D), mask (n, N))}
        (a missing modality: an all-False mask row, or the modality left out) and their tabular rows.
        Missing modalities are handled as in training: zero-filled with a presence indicator."""
        from trainables.heads import predict_proba_full

        n = n if n is not None else (len(tabular) if tabular is not None else len(next(iter(bags.values()))[1]))
        std = {}
        for m in self.modalities:
            if m in bags:
                X, mask = bags[m]
                if X.shape[-1] != len(self.standardisers[m].mu):
                    raise ModelError(f"modality {m!r}: embeddings of width {X.shape[-1]}, the model expects "
                                     f"{len(self.standardisers[m].mu)} (another encoder?)")
            else:
                X, mask = np.zeros((n, 1, len(self.standardisers[m].mu)), np.float32), np.zeros((n, 1), bool)
            std[m] = (self.standardisers[m].apply(X, mask), mask)
        tab = None
        if self.tabular is not None:
            if tabular is None:
                raise ModelError(f"the model expects tabular columns {self.tabular_columns}; none given")
            missing = [c for c in self.tabular_columns if c not in tabular.columns]
            if missing:
                raise ModelError(f"tabular column(s) missing: {', '.join(missing)} (the model expects "
                                 f"{', '.join(self.tabular_columns)})")
            tab = self.tabular.transform(tabular[self.tabular_columns].reset_index(drop=True))
        X = self.fused_features(std, tab)
        proba = predict_proba_full(self.head, X, len(self.class_names))
        attention = {}
        for m in self.modalities:
            Z, mask = std[m]
            try:
                with torch.inference_mode():
                    a = self.poolers[m].weights(torch.as_tensor(Z), torch.as_tensor(mask)).numpy()
            except NotImplementedError:  # max pooling has no weights over slices
                continue
            attention[m] = np.where(mask, a, np.nan).astype(np.float32)
        return Prediction(proba, {m: std[m][1].any(1) for m in self.modalities}, attention)

    # -- saving and loading ------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Write the artifact folder atomically (a temporary sibling renamed into place)."""
        import shutil
        import tempfile

        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            tensors = {}
            for m, s in self.standardisers.items():
                tensors[f"std/{m}/mu"] = np.asarray(s.mu, np.float32)
                tensors[f"std/{m}/sd"] = np.asarray(s.sd, np.float32)
                if s.P is not None:
                    tensors[f"std/{m}/P"] = np.asarray(s.P, np.float32)
            for m, p in self.poolers.items():
                tensors.update({f"pool/{m}/{k}": v.detach().cpu().numpy() for k, v in p.state_dict().items()})
            meta = dict(self.meta)
            meta["head_format"] = self._save_head(tmp, tensors)
            if self.tabular is not None:
                skops_dump(self.tabular.fitted_, tmp / "tabular.skops", "the tabular preprocessing")
            save_file(tensors, str(tmp / TENSORS_FILE))
            (tmp / MODEL_FILE).write_text(json.dumps(meta, indent=1, default=str))
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                path.rename(old)
                tmp.rename(path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    def _save_head(self, folder: Path, tensors: dict) -> dict:
        from trainables.heads import Scaled, TorchMLPClassifier

        h = self.head
        inner = h.estimator_ if isinstance(h, Scaled) else h
        if isinstance(inner, TorchMLPClassifier):  # torch inside: weights as tensors, the scaler with skops
            tensors.update({f"head/{k}": v.detach().cpu().numpy() for k, v in inner.model_.state_dict().items()})
            if inner is not h:
                skops_dump(h.scaler_, folder / "head_scaler.skops", "the head's scaler")
            return {"kind": "torch_mlp", "params": inner.get_params(), "classes": [int(c) for c in inner.classes_],
                    "in_dim": int(inner.model_[0].in_features), "scaled": inner is not h}
        skops_dump(h, folder / "head.skops", f"head {self.meta['head']!r}")
        return {"kind": "skops"}


def skops_dump(obj, path: Path, what: str) -> None:
    import skops.io as sio

    try:
        sio.dump(obj, path)
    except Exception as exc:  # a part skops cannot write safely: say which, never fall back to pickle
        raise ModelError(f"{what} cannot be saved in a safe format ({type(exc).__name__}: {exc})") from None


def skops_load(path: Path):
    import skops.io as sio

    types = sio.get_untrusted_types(file=path)
    bad = [t for t in types if not t.startswith(TRUSTED_PREFIXES)]
    if bad:
        raise ModelError(f"{path}: refuses to load types outside the allow-list: {', '.join(bad[:5])}")
    return sio.load(path, trusted=types)


def _versions() -> dict[str, str]:
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for pkg in ("sweeps", "torch", "scikit-learn", "lightgbm", "numpy", "skops", "safetensors", "timm"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _minor(v: str | None) -> str:
    return ".".join(str(v).split(".")[:2]) if v else ""


def load_model(path: str | Path) -> Model:
    """Load a model folder written by ``Model.save`` (``<run>/model``). Refuses, with a message saying
    what to do, an artifact of another format or one whose scikit-learn parts another scikit-learn
    minor version wrote."""
    from safetensors.numpy import load_file

    from trainables.fusion import FUSIONS
    from trainables.pooling import POOLINGS
    from trainables.registry import build

    path = Path(path)
    if (path / "model" / MODEL_FILE).exists():
        path = path / "model"
    if not (path / MODEL_FILE).exists():
        raise FileNotFoundError(f"{path}: no {MODEL_FILE}; write a model with `python -m sweeps finalize RUN`")
    meta = json.loads((path / MODEL_FILE).read_text())
    fmt = meta.get("format")
    if fmt != FORMAT:
        raise IncompatibleModelError(
            f"{path}: model format {fmt} (written by sweeps {meta.get('versions', {}).get('sweeps', '?')}); this "
            f"version reads format {FORMAT}. Refit it with this version: `python -m sweeps finalize RUN`")
    have, wrote = _versions().get("scikit-learn"), meta.get("versions", {}).get("scikit-learn")
    if _minor(have) != _minor(wrote):
        raise IncompatibleModelError(
            f"{path}: its scikit-learn parts were written by scikit-learn {wrote}, this is {have}; "
            "refit with `python -m sweeps finalize RUN` or install the matching version")
    tensors = load_file(str(path / TENSORS_FILE))
    std = {}
    for m in meta["modalities"]:
        std[m] = Standardiser(tensors[f"std/{m}/mu"], tensors[f"std/{m}/sd"], tensors.get(f"std/{m}/P"))
    pool = meta["pooling"]
    poolers = {}
    for m in meta["modalities"]:
        p = build(POOLINGS, {"name": pool["name"], pool["name"]: pool["params"]}, "pooling", in_dim=pool["dims"][m])
        state = {k.split("/", 2)[2]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith(f"pool/{m}/")}
        p.load_state_dict(state)
        poolers[m] = p.eval()
    tabular = None
    if (path / "tabular.skops").exists():
        from trainables.tabular import TABULAR
        from trainables.tabular import normalise as tabular_spec

        tabular = build(TABULAR, tabular_spec(meta["tabular"]), "tabular")
        tabular.fitted_ = tuple(skops_load(path / "tabular.skops"))
    hf = meta.get("head_format", {})
    if hf.get("kind") == "torch_mlp":
        from trainables.heads import TorchMLPClassifier

        head = TorchMLPClassifier(**hf["params"])
        head.classes_ = np.array(hf["classes"])
        head.model_ = torch.nn.Sequential(
            torch.nn.Linear(hf["in_dim"], head.hidden_dim), torch.nn.ReLU(), torch.nn.Dropout(head.dropout),
            torch.nn.Linear(head.hidden_dim, len(head.classes_)))
        head.model_.load_state_dict({k[5:]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith("head/")})
        head.model_.eval()
        if hf.get("scaled"):
            from trainables.heads import Scaled

            mlp, head = head, Scaled(TorchMLPClassifier(**hf["params"]))
            head.scaler_, head.estimator_, head.classes_ = skops_load(path / "head_scaler.skops"), mlp, mlp.classes_
    else:
        head = skops_load(path / "head.skops")
    fusion = build(FUSIONS, meta["fusion"], "fusion")
    return Model(meta, std, poolers, tabular, fusion, head)


# -- applying a model to a cohort (predict, serve and explain use these) --------------------------------
def check_cohort(model, cohort) -> None:
    """Refuse a cohort that lacks the model's modalities or columns, naming them."""
    lacks = [m for m in model.modalities if m not in cohort.modalities]
    if lacks:
        raise ModelError(f"cohort {cohort.name!r} has no {', '.join(lacks)} series; the model was trained on "
                         f"{', '.join(model.modalities)} (cohort modalities: {', '.join(cohort.modalities) or 'none'})")
    cols = [c for c in model.tabular_columns if c not in cohort.samples.columns]
    if cols:
        raise ModelError(f"cohort {cohort.name!r} lacks the tabular column(s) {', '.join(cols)} the model expects "
                         f"({', '.join(model.tabular_columns)})")


def encoder_weights(model, weights: str | None = None) -> str | None:
    """The encoder weights to embed with, checked against the identity the model recorded."""
    from trainables.encoders import resolve_weights, weights_id

    enc = model.encoder
    spec = weights if weights is not None else enc["weights"]
    if spec == "local file":
        raise ModelError(f"the model's encoder {enc['name']!r} used a local weights file; give it with --weights PATH")
    w = resolve_weights(enc["name"], spec)
    if weights_id(w) != enc["weights_id"]:
        raise ModelError(f"encoder weights {w or 'random init'} are not the ones the model was trained with "
                         f"(identity {weights_id(w)} != {enc['weights_id']})")
    return w


def prediction_table(model, sample_ids: list[str], pred, labels: list | None = None) -> pd.DataFrame:
    """The prediction table (see the module docstring)."""
    classes = model.class_names
    out = pd.DataFrame({"sample_id": sample_ids, "predicted": [classes[k] for k in pred.proba.argmax(1)]})
    for k, c in enumerate(classes):
        out[f"p_{c}"] = pred.proba[:, k]
    out["modalities"] = [";".join(m for m in model.modalities if pred.presence[m][i]) for i in range(len(sample_ids))]
    out["attention"] = [json.dumps({m: [round(float(x), 5) for x in a[i][np.isfinite(a[i])]]
                                    for m, a in pred.attention.items() if pred.presence[m][i]})
                        for i in range(len(sample_ids))]
    if labels is not None:
        out["label"] = labels
    return out


def predict_cohort(model, cohort, *, weights: str | None = None, progress: bool = False) -> pd.DataFrame:
    """The prediction table of every sample of ``cohort``."""
    from trainables.embed import embed_cohort
    from trainables.pipeline import build_bags

    check_cohort(model, cohort)
    s = cohort.samples
    ids = s["sample_id"].astype(str).tolist()
    bags = {}
    if model.encoder and model.modalities:
        enc = model.encoder
        entry = embed_cohort(cohort, enc["name"], enc["preprocessing"], weights=encoder_weights(model, weights),
                             input_size=enc["input_size"], progress=progress)
        bags = build_bags(entry.embeddings, entry.index, s["sample_id"].tolist(), model.modalities)
    tab = s[model.tabular_columns].reset_index(drop=True) if model.tabular_columns else None
    pred = model.predict(bags, tab, n=len(s))
    target = model.meta.get("target")
    labels = s[target].tolist() if target and target in s.columns else None
    return prediction_table(model, ids, pred, labels)


def load_cohort(model, data: str, cohort: str | None = None, options: dict | None = None):
    from trainables.data import COHORTS
    from trainables.registry import build

    name = cohort or model.meta.get("adapter")
    if not name:
        raise ValueError("the model does not record its cohort adapter; give --cohort NAME")
    return build(COHORTS, {"name": name, name: {**(options or {}), "root": str(Path(data).resolve())}}, "cohort")
