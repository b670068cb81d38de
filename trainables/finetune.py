"""The fine-tuning trainable: the image encoder trained end to end inside the trial.

Where :func:`~trainables.trainable.sweep_trial` reads frozen embeddings from the cache, a fine-tuning
trial reads the slices themselves, once per worker process: at most ``max_slices`` per series, evenly
spaced along its order, preprocessed and resized to ``input_size``, and kept in memory as uint8
(the preprocessing maps every slice to [0, 1], so 1/255 steps lose nothing an encoder would notice).
Then, per patient-grouped fold, on the fold's training part only, it trains a fresh encoder (the
space's weights, else the seeded random init: every fold starts from the same weights), shared by the
modalities, with one pooling over each sample's slices and one linear head per modality, the logits
summed over the modalities a sample has (as :func:`~trainables.pooling.fit_poolers` does), under
cross-entropy, with :func:`trainables.training.fit`. The held-out fold is predicted with the trained
model; the metrics come from the out-of-fold predictions of every sample. The trial saves the same
record as ``sweep_trial`` (:mod:`trainables.record`), so the report works unchanged.

Config keys besides ``encoder``, ``preprocessing`` and ``pooling``: ``input_size`` (default: the
encoder's), ``max_slices`` (0 = every slice; default 16) and ``train``, the
:class:`~trainables.training.TrainOptions` of the whole network (defaults :data:`TRAIN_DEFAULTS`;
``class_weighted: True`` weights the loss by balanced class weights of the training fold). With
``compare={"pooling": [...]}`` every arm trains its own network on the same folds (paired design).

Per-epoch reports: after each epoch of each fold (and arm) the trial reports ``epochs_done`` (the
epochs trained so far in the trial, the time axis of :func:`make_scheduler`'s ASHA) and, under the
sweep's metric, an early-stopping signal: per arm, the mean of the held-out fold scores of the folds
finished so far and the current fold's held-out score at this epoch; the best arm's. It is a signal
for stopping poor trials early, not the trial's score: that is the final report's out-of-fold
metric, which carries the checkpoint and no ``epochs_done`` (so ASHA never compares it with the
signals).

GPU: a trial given (a fraction of) a GPU by Ray (``--gpus-per-trial 0.25``) trains there, in bfloat16
autocast where the GPU supports it. Not fp16: ``fit`` has no loss scaling, and fp16 gradients of a
deep network underflow without it; GPUs without bfloat16 train in full precision.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from .data.images import ImageReadError, read_slice, read_slice_with_voi
from .encoders import ENCODERS, IMAGENET_MEAN, IMAGENET_STD, Preprocessor, create_encoder
from .handle import DataHandle
from .metrics import compute_metrics
from .lookup import check as check_name
from .pipeline import arm_specs, flatten
from .pooling import POOLINGS
from .record import find_completed, report_record, result_arrays
from .registry import build
from .splits import grouped_folds
from .threads import limit_threads
from .training import TRAIN_OPTION_NAMES, TrainOptions, fit, options_from, training_device

log = logging.getLogger("sweeps.finetune")

EPOCH_ATTR = "epochs_done"  # the per-epoch reports' time axis (ASHA's time_attr)
SETTINGS = frozenset({"input_size", "max_slices", "train"})  # config keys only a fine-tuning trial reads
TRAIN_DEFAULTS = {"epochs": 3, "lr": 1e-3, "batch_size": 8}  # samples per step: each brings all its slices
DEFAULT_MAX_SLICES = 16
READ_BATCH = 256  # slices preprocessed together (grayscale_norm is vectorised over a batch)
PREDICT_BATCH = 32  # samples per inference step
# fields of a frozen-embedding space that a fine-tuning trial would silently ignore, and why
NOT_FOR_FINETUNE = {
    "head": "the network's per-modality linear heads are the head",
    "fusion": "the per-modality logits are summed",
    "sampling": "weight the loss with train={'class_weighted': True}",
    "pca_dim": "the encoder is trained, not projected",
    "tabular": "a fine-tuning trial learns from images only",
    "text": "a fine-tuning trial learns from images only",
    "missing_eval": "not implemented for fine-tuning",
}


# -- the space ------------------------------------------------------------------------------------
def _values(v: Any) -> list[Any]:
    """What a space entry can take: a constant, a categorical's categories or a grid's values; [] for
    other domains (a trial checks what it draws)."""
    from ray.tune.search.sample import Categorical, Domain

    if isinstance(v, dict) and "grid_search" in v:
        return list(v["grid_search"])
    return list(v.categories) if isinstance(v, Categorical) else [] if isinstance(v, Domain) else [v]


def check_space(space: dict[str, Any], where: str) -> None:
    """Raise ValueError for what a fine-tuning space cannot run: no encoder, a frozen-only field, a bad
    ``input_size`` / ``max_slices``, an unknown or invalid training option (with a did-you-mean), or
    training options inside the pooling's parameters (they belong in ``train``)."""
    if "encoder" not in space:
        raise ValueError(f"{where}: trainable='finetune' trains an image encoder: field 'encoder' is required")
    for key, why in NOT_FOR_FINETUNE.items():
        if key in space:
            raise ValueError(f"{where}: field {key!r} does not apply to trainable='finetune' ({why})")
    for key, low in (("input_size", 8), ("max_slices", 0)):
        for v in _values(space.get(key, low)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{where}.{key}: must be a whole number >= {low}, got {v!r}")
    train = space.get("train", {})
    if not isinstance(train, dict):
        raise ValueError(f"{where}.train: must be a dict of training options, got {type(train).__name__}")
    for name, v in train.items():
        check_name("training option", name, TRAIN_OPTION_NAMES, f"{where}.train", error=ValueError)
        for x in _values(v):
            try:
                TrainOptions(**{name: x})
            except ValueError as exc:  # it names the option and what it must be
                raise ValueError(f"{where}.train: {exc}") from None
    pooling = space.get("pooling", {})
    for name, params in pooling.items() if isinstance(pooling, dict) else ():
        misplaced = sorted(set(params) & TRAIN_OPTION_NAMES) if isinstance(params, dict) else []
        if misplaced:
            raise ValueError(f"{where}.pooling.{name}: training options {misplaced} go in 'train' when fine-tuning "
                             "(one optimiser trains the whole network)")


def epoch_budget(space: dict[str, Any], folds: int, n_arms: int) -> int:
    """The most epochs a trial of ``space`` trains (folds x arms x the largest ``train.epochs`` it can
    draw): the last ``epochs_done`` it can report."""
    epochs = space.get("train", {}).get("epochs", TRAIN_DEFAULTS["epochs"])
    drawn = _values(epochs)
    return int(folds * max(1, n_arms) * (max(drawn) if drawn else epochs.upper))


def make_scheduler(spec):
    """The Tune scheduler a :class:`~sweeps.spec.SweepSpec` names: None (every trial runs to its end) or
    "asha": asynchronous successive halving on the per-epoch reports, rungs at 1, 2, 4, ... epochs
    (``reduction_factor=2``: at each rung a trial below the median of the trials that reached it before
    stops). A trial that passes the rungs runs to its end (``stop_last_trials=False``), so its final
    report, and record, always land."""
    if spec.scheduler is None:
        return None
    if spec.scheduler != "asha":
        check_name("scheduler", spec.scheduler, ("asha",), error=ValueError)
    from ray.tune.schedulers import ASHAScheduler

    budget = epoch_budget(spec.space, spec.folds, len(spec.compare.get("pooling", [])))
    return ASHAScheduler(time_attr=EPOCH_ATTR, metric=spec.metric, mode=spec.mode, grace_period=1, reduction_factor=2,
                         max_t=max(2, budget), stop_last_trials=False)


# -- slices in memory -----------------------------------------------------------------------------
@dataclass
class Slices:
    """Each sample's preprocessed slices per modality: ``images[m]`` (n, S, H, W) uint8 (value/255 is
    the preprocessed [0, 1] slice), ``masks[m]`` (n, S) bool (False = padding or no slice), and whether
    the encoder input gets ImageNet normalisation."""

    images: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    imagenet: bool

    def to(self, device: str) -> Slices:
        return Slices({m: x.to(device) for m, x in self.images.items()}, {m: k.to(device) for m, k in self.masks.items()},
                      self.imagenet)


def select_slices(instances: pd.DataFrame, max_slices: int) -> pd.DataFrame:
    """At most ``max_slices`` rows per (sample, modality) series (0 = all), evenly spaced along its
    order (the centres of equal stretches), with their position in the bag as ``slot``."""
    inst = instances.sort_values(["sample_id", "modality", "order"], kind="stable").reset_index(drop=True)
    k = inst.groupby(["sample_id", "modality"], sort=False).size().to_numpy()  # series lengths, in row order
    start = np.concatenate([[0], np.cumsum(k)[:-1]])
    s = np.minimum(k, max_slices) if max_slices else k
    series = np.repeat(np.arange(len(k)), s)
    slot = np.arange(s.sum()) - np.repeat(np.cumsum(s) - s, s)
    rows = start[series] + ((slot + 0.5) * k[series] // s[series]).astype(np.int64)
    return inst.iloc[rows].assign(slot=slot).reset_index(drop=True)


def load_slices(instances: pd.DataFrame, sample_ids: list[str], modalities: list[str], preprocessing: str,
                input_size: int, max_slices: int) -> Slices:
    """Read and preprocess the selected slices of ``sample_ids``. An unreadable slice is left out (its
    bag has one slice fewer), as the embedding stage quarantines it; the log says how many."""
    pos = pd.Series(np.arange(len(sample_ids)), index=pd.Index(sample_ids))
    sel = select_slices(instances[instances["sample_id"].isin(pos.index) & instances["modality"].isin(modalities)],
                        max_slices)
    pre = Preprocessor(preprocessing, input_size)
    imagenet, pre.imagenet = pre.imagenet, False  # normalised on the fly: the stored slice stays in [0, 1]
    read = read_slice_with_voi if pre.needs_voi else (lambda path, frame: (read_slice(path, frame), None))
    width = sel.groupby("modality")["slot"].max()
    images = {m: np.zeros((len(sample_ids), int(width.get(m, 0)) + 1, input_size, input_size), np.uint8) for m in modalities}
    masks = {m: np.zeros(images[m].shape[:2], bool) for m in modalities}
    bad: list[tuple[str, str]] = []
    for start in range(0, len(sel), READ_BATCH):
        chunk = sel.iloc[start : start + READ_BATCH]
        imgs, vois, ok = [], [], []
        for k, (path, frame) in enumerate(zip(chunk["path"], chunk["frame"])):
            try:
                img, voi = read(str(path), int(frame))
            except ImageReadError as exc:
                bad.append((str(path), exc.reason))
                continue
            imgs.append(img)
            vois.append(voi)
            ok.append(k)
        if not ok:
            continue
        x = pre.batch(pre.slices(imgs, vois))[:, 0].clamp(0, 1)  # (B, S, S): bilinear resizing can overshoot
        u8 = (x * 255).round().to(torch.uint8).numpy()
        rows = chunk.iloc[ok]
        sample, slot = pos[rows["sample_id"]].to_numpy(), rows["slot"].to_numpy()
        for m in modalities:
            hit = (rows["modality"] == m).to_numpy()
            images[m][sample[hit], slot[hit]] = u8[hit]
            masks[m][sample[hit], slot[hit]] = True
    if bad and len(bad) == len(sel):
        raise ImageReadError(bad[0][0], f"{bad[0][1]} (none of the {len(sel)} selected slices could be read)")
    if bad:
        log.warning("%d of %d selected slices could not be read and were left out; first: %s: %s",
                    len(bad), len(sel), *bad[0])
    return Slices({m: torch.from_numpy(x) for m, x in images.items()}, {m: torch.from_numpy(k) for m, k in masks.items()},
                  imagenet)


_SLICES: dict[str, Slices] = {}


def trial_slices(handle: DataHandle, preprocessing: str, input_size: int, max_slices: int) -> Slices:
    """``load_slices`` once per worker process and setting: trials on a reused actor share it."""
    h = hashlib.blake2b(digest_size=12)
    h.update(repr((handle.sample_ids, handle.modalities, preprocessing, input_size, max_slices)).encode())
    h.update(pd.util.hash_pandas_object(handle.instances, index=False).to_numpy().tobytes())
    key = h.hexdigest()
    if key not in _SLICES:
        _SLICES.clear()  # one setting's slices at a time keeps memory flat
        _SLICES[key] = load_slices(handle.instances, handle.sample_ids, handle.modalities, preprocessing, input_size,
                                   max_slices)
    return _SLICES[key]


# -- the network ----------------------------------------------------------------------------------
class FinetuneNet(nn.Module):
    """Encoder (shared by the modalities) -> per modality a pooling over the sample's slices and a
    linear head; the logits are summed over the modalities a sample has."""

    def __init__(self, encoder: nn.Module, poolers: dict[str, nn.Module], n_classes: int, imagenet: bool):
        super().__init__()
        self.encoder = encoder
        self.poolers = nn.ModuleDict(poolers)
        self.heads = nn.ModuleDict({m: nn.Linear(p.out_dim, n_classes) for m, p in poolers.items()})
        self.n_classes = n_classes
        self.imagenet = imagenet
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(k, H, W) uint8 slices -> (k, D) float features."""
        x = (x.float() / 255).unsqueeze(1).expand(-1, 3, -1, -1)
        if self.imagenet:
            x = (x - self.mean) / self.std
        x = x.contiguous(memory_format=torch.channels_last)
        if self.training and len(x) == 1:  # batch norm cannot train on one value per channel: a batch of two copies
            return self.encoder(x.expand(2, -1, -1, -1))[:1].float()
        return self.encoder(x).float()

    def forward(self, images: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], attention: bool = False):
        """Logits (b, C) of a batch (``images[m]`` (b, S, H, W), ``masks[m]`` (b, S)); with ``attention``
        also {modality: (b, S) weights} of the learnable poolings (NaN where no slice)."""
        mods = list(self.poolers)
        flat = torch.cat([images[m][masks[m]] for m in mods])  # every real slice of the batch, one encoder pass
        feats = self.embed(flat) if len(flat) else flat.new_zeros((0, 1), dtype=torch.float32)
        parts = feats.split([int(masks[m].sum()) for m in mods])
        b = len(next(iter(masks.values())))
        logits = feats.new_zeros((b, self.n_classes))
        weights = {}
        for m, part in zip(mods, parts):
            mask = masks[m]
            if not len(part):  # no sample of the batch has this modality
                continue
            bag = part.new_zeros((*mask.shape, part.shape[1]))
            bag[mask] = part
            logits = logits + self.heads[m](self.poolers[m](bag, mask)) * mask.any(1, keepdim=True)
            if attention and self.poolers[m].learnable:
                weights[m] = self.poolers[m].weights(bag, mask).masked_fill(~mask, float("nan"))
        return (logits, weights) if attention else logits


def _autocast(device: str):
    """bfloat16 autocast on a GPU that has it (see the module docstring); otherwise a no-op context."""
    on = device.startswith("cuda") and torch.cuda.is_bf16_supported()
    return torch.autocast("cuda" if on else "cpu", dtype=torch.bfloat16, enabled=on)


def _batch(slices: Slices, rows: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return {m: x[rows] for m, x in slices.images.items()}, {m: k[rows] for m, k in slices.masks.items()}


@torch.inference_mode()
def predict(net: FinetuneNet, slices: Slices, rows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Class probabilities (len(rows), C) and attention weights {m: (len(rows), S)} of the samples ``rows``."""
    net.eval()
    device = str(next(net.parameters()).device)  # the slices are on the same device
    probas, attn = [], {}
    for start in range(0, len(rows), PREDICT_BATCH):
        idx = torch.as_tensor(rows[start : start + PREDICT_BATCH], device=device)
        with _autocast(device):
            logits, w = net(*_batch(slices, idx), attention=True)
        probas.append(torch.softmax(logits.float(), 1).cpu().numpy())
        for m, a in w.items():
            attn.setdefault(m, []).append(a.float().cpu().numpy())
    return np.concatenate(probas), {m: np.concatenate(a) for m, a in attn.items()}


@torch.no_grad()
def recalibrate_bn(net: FinetuneNet, slices: Slices, rows: np.ndarray, batch_size: int) -> None:
    """Recompute every batch-norm layer's running statistics with the current weights, as the plain average
    over batches of ``rows`` (the training samples) of ``batch_size`` samples, as in training ("precise BN",
    torch's ``swa_utils.update_bn``). The running averages kept during training lag behind weights that
    move fast (a few steps from a random init): a network that ranks its training fold perfectly in training
    mode then predicts one class for everything in eval mode. Training itself uses batch statistics, so
    recalibrating between epochs does not change it."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = net.training
    net.train()
    device = str(next(net.parameters()).device)
    for start in range(0, len(rows), batch_size):
        with _autocast(device):
            net(*_batch(slices, torch.as_tensor(rows[start : start + batch_size], device=device)))
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    net.train(was_training)


def build_net(encoder: str, weights: str | None, input_size: int, pooling: str, pooling_params: dict,
              modalities: list[str], n_classes: int, imagenet: bool, seed: int) -> FinetuneNet:
    """A fresh network: the encoder (weights or seeded init) made trainable, then poolers and heads from ``seed``."""
    enc, dim = create_encoder(encoder, input_size, weights or None)
    enc.requires_grad_(True).train().to(memory_format=torch.channels_last)
    torch.manual_seed(seed)
    poolers = {m: build(POOLINGS, {"name": pooling, pooling: pooling_params}, "pooling", in_dim=dim) for m in modalities}
    return FinetuneNet(enc, poolers, n_classes, imagenet)


def train_fold(net: FinetuneNet, slices: Slices, train: np.ndarray, y: np.ndarray, n_classes: int,
               options: TrainOptions, seed: int, on_epoch: Callable[[int, dict], None] | None = None) -> dict:
    """Train ``net`` in place with ``fit`` on the samples ``train`` that have a slice (one without any
    cannot teach an image model; it is still predicted, from the heads' biases), then recalibrate its
    batch norm on them; returns fit's history."""
    device = training_device()
    net.to(device)  # fit returns the model to the device it found it on: keep it here for predicting
    seen = torch.stack([k.any(1) for k in slices.masks.values()], 1).any(1).cpu().numpy()
    train = train[seen[train]]
    rows = torch.as_tensor(train, device=device)

    def forward(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        with _autocast(device):
            return model(*_batch(slices, rows[idx])).float()

    history = fit(net, forward, y[train], n_classes, options, seed=seed, on_epoch=on_epoch)
    recalibrate_bn(net, slices, train, options.batch_size)
    return history


# -- the trial ------------------------------------------------------------------------------------
def run_finetune(config: dict, handle: DataHandle, report: Callable[[dict], None] | None = None) -> dict[str, dict]:
    """Every fold (and arm) of one configuration; ``report`` gets the per-epoch signals (see the module
    docstring). Returns {arm: {"proba", "metrics", "fold_metrics", "attention", "missing"}} as
    :func:`~trainables.pipeline.evaluate` does."""
    if handle.instances is None or not handle.modalities:
        raise ValueError("a fine-tuning trial needs the cohort's image instances (prepare the sweep with trainable='finetune')")
    if handle.Y is not None:
        raise ValueError("a fine-tuning trial predicts one target; several targets need the frozen trainable")
    seed = handle.seed + int(config.get("__trial_index__", 0) or 0)
    encoder = config["encoder"]
    size = int(config.get("input_size") or ENCODERS[ENCODERS.check(encoder)].input_size)
    max_slices = int(config.get("max_slices", DEFAULT_MAX_SLICES))
    options = options_from({**TRAIN_DEFAULTS, **config.get("train", {})})
    arms = arm_specs(config, handle.arms)
    for arm, (_, _, misplaced) in arms.items():
        if misplaced:
            raise ValueError(f"pooling {arm!r}: training options {sorted(misplaced)} go in 'train' when fine-tuning")
    slices = trial_slices(handle, config.get("preprocessing", "grayscale_norm"), size, max_slices).to(training_device())
    y, classes, metric = handle.y, handle.class_names, handle.metric
    n_classes = len(classes)
    pick = max if handle.mode == "max" else min
    folds = grouped_folds(y, handle.groups, handle.folds, seed)
    proba = {a: np.zeros((len(y), n_classes)) for a in arms}
    attention: dict[str, dict[str, np.ndarray]] = {a: {} for a in arms}
    fold_metrics: dict[str, list[dict]] = {a: [] for a in arms}
    epochs_done = 0
    for f, (tr, te) in enumerate(folds):
        for arm, (pooling, params, _) in arms.items():
            net = build_net(encoder, handle.entries.get(encoder), size, pooling, params, handle.modalities, n_classes,
                            slices.imagenet, seed + f)

            def on_epoch(epoch: int, history: dict) -> None:
                nonlocal epochs_done
                epochs_done += 1
                if report is None:
                    return
                recalibrate_bn(net, slices, tr, options.batch_size)
                current = compute_metrics(y[te], predict(net, slices, te)[0], classes)[metric]

                def running(a: str) -> float | None:  # the arm's held-out fold scores so far, this epoch's included
                    vals = [fm[metric] for fm in fold_metrics[a]] + ([current] if a == arm else [])
                    vals = [v for v in vals if math.isfinite(v)]
                    return float(np.mean(vals)) if vals else None

                signals = [s for s in map(running, arms) if s is not None]
                report({metric: pick(signals) if signals else float("nan"), EPOCH_ATTR: epochs_done, "fold": f,
                        "epoch": epoch + 1, "arm": arm, f"fold_{metric}": current, "train_loss": history["train_loss"]})

            train_fold(net, slices, tr, y, n_classes, options, seed + f, on_epoch)
            p, w = predict(net, slices, te)
            proba[arm][te] = p
            for m, a in w.items():
                attention[arm].setdefault(m, np.full(slices.masks[m].shape, np.nan, np.float32))[te] = a
            fold_metrics[arm].append(compute_metrics(y[te], p, classes))
    return {a: {"proba": proba[a], "metrics": compute_metrics(y, proba[a], classes), "fold_metrics": fold_metrics[a],
                "attention": attention[a], "missing": {}} for a in arms}


def finetune_trial(config: dict, handle: DataHandle) -> None:
    """The Ray Tune function trainable: per-epoch signals, then the out-of-fold metrics with the trial's record."""
    from ray import tune

    done = find_completed(config, handle.run_dir)
    if done is not None:
        tune.report(done.metrics)
        return
    limit_threads()  # torch, BLAS and OpenMP pools to this trial's CPUs (see trainables.threads)
    results = run_finetune(config, handle, report=tune.report)
    report_record(config, flatten(results, handle.metric, handle.mode), result_arrays(results))
