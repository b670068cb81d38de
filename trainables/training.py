"""One training loop for every torch model trained inside a trial (poolers, learned fusions, token
models, MLPs), with the training choices a search space can sweep as named options.

The model is anything whose logits for a batch of sample indices come from ``forward(model, idx)``;
the data stay in the caller's closure, so one loop serves bags, modality vectors and token ids.
Everything ``fit`` sees is the training part of a fold: its inner validation split (early stopping)
and its hidden labels (semi-supervised) are carved out of those samples only, never out of the fold
being scored.

Randomness: batch order, the inner split and the hidden labels come from ``seed`` alone. Weight
initialisation, dropout and the mean teacher's input noise draw from torch's global RNG, which the
caller seeds before building the model (``torch.manual_seed(seed)``, as ``fit_poolers`` does), so a
run is reproducible from one seed. ``fit`` does not reseed it: that keeps the pooler training
bit-identical to the loop it replaced.
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import MISSING, dataclass, fields
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .lookup import check as check_name
from .registry import Param
from .sampling import balanced_class_weight

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("none", "cosine", "onecycle", "step")
INITS = ("default", "xavier")
SEMI_SUPERVISED = ("none", "mean_teacher")
SGD_MOMENTUM = 0.9
STEP_GAMMA = 0.1  # "step" schedule: lr x 0.1 after each third of the epochs


@dataclass
class TrainOptions:
    """Training choices a space can sweep. The defaults are the pooler training the foundation
    shipped (full-batch AdamW, lr 1e-2, 40 epochs), so leaving them alone changes nothing.

    - ``class_weighted``: None follows the trial (the ``class_weight`` the caller passes, e.g. from
      the class_weight sampling); True weights the loss (the passed weights, else balanced ones from
      the training labels); False never weights it.
    - ``early_stopping``: patience in epochs (0 = off), on the loss of a stratified inner split of
      ``val_fraction`` of the labelled training samples; the best epoch's weights are kept.
    - ``ema``: decay of an exponential moving average of the weights (0 = off); validation and the
      returned model use the average. Ignored under mean teacher, whose teacher is already one.
    - ``semi_supervised="mean_teacher"`` (Tarvainen & Valpola 2017): the student learns from
      cross-entropy on the labelled samples plus ``consistency`` x MSE between its softmax and the
      teacher's on every training sample, each under its own input noise (``noise``, see ``fit``)
      and dropout; the teacher is an EMA (``teacher_ema``) of the student and is the result.
    - ``hidden_label_fraction``: share of the training labels hidden (stratified, seeded) to
      simulate unlabelled data. With ``semi_supervised="none"`` those samples are left out, so the
      two settings compare on the same labels.
    """

    optimizer: str = "adamw"
    lr: float = 1e-2
    weight_decay: float = 1e-4
    epochs: int = 40
    batch_size: int = 512
    schedule: str = "none"
    grad_clip: float = 0.0
    early_stopping: int = 0
    val_fraction: float = 0.2
    ema: float = 0.0
    init: str = "default"
    class_weighted: bool | None = None
    semi_supervised: str = "none"
    hidden_label_fraction: float = 0.0
    consistency: float = 10.0
    teacher_ema: float = 0.99
    noise: float = 0.1

    def __post_init__(self) -> None:
        for name in ("optimizer", "schedule", "init", "semi_supervised"):
            setattr(self, name, str(getattr(self, name)).lower())  # "AdamW" is adamw
        for name in ("epochs", "batch_size", "early_stopping", "lr", "weight_decay", "grad_clip", "val_fraction",
                     "ema", "hidden_label_fraction", "consistency", "teacher_ema", "noise"):
            value = getattr(self, name)
            whole = name in ("epochs", "batch_size", "early_stopping")
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if isinstance(value, bool) or math.isnan(number) or (whole and number != int(number)):
                raise ValueError(f"training option {name}={value!r} must be a {'whole ' if whole else ''}number")
            setattr(self, name, int(number) if whole else number)
        if self.class_weighted is not None:
            if str(self.class_weighted) not in ("True", "False"):
                raise ValueError(f"training option class_weighted={self.class_weighted!r} must be True, False or None")
            self.class_weighted = str(self.class_weighted) == "True"  # numpy bools from a sampler too
        for name, param in TRAIN_PARAMS.items():  # the one declaration: choices and ranges
            param.check(getattr(self, name), f"training option {name}")


# Allowed values, ranges and meaning of each training option; with the dataclass's types and defaults
# they make TRAIN_PARAMS, the one declaration that TrainOptions checks against and that the space check
# and ``python -m sweeps list`` read (pooling parameters, the fine-tuning ``train`` entry).
_OPTION_RULES: dict[str, dict[str, Any]] = {
    "optimizer": dict(choices=OPTIMIZERS, doc="optimiser"),
    "lr": dict(low=0, open_low=True, doc="learning rate"),
    "weight_decay": dict(low=0, doc="AdamW/Adam/SGD weight decay"),
    "epochs": dict(low=1, doc="training epochs"),
    "batch_size": dict(low=1, doc="samples per step"),
    "schedule": dict(choices=SCHEDULES, doc="learning-rate schedule"),
    "grad_clip": dict(low=0, doc="gradient-norm clip (0 = off)"),
    "early_stopping": dict(low=0, doc="patience in epochs on an inner validation split (0 = off)"),
    "val_fraction": dict(low=0, high=1, open_low=True, open_high=True, doc="share of training samples for early stopping"),
    "ema": dict(low=0, high=1, open_high=True, doc="weight-average decay (0 = off)"),
    "init": dict(choices=INITS, doc="weight initialisation"),
    "class_weighted": dict(doc="weight the loss by class (None: follow the trial's sampling)"),
    "semi_supervised": dict(choices=SEMI_SUPERVISED, doc="mean_teacher: Tarvainen & Valpola 2017"),
    "hidden_label_fraction": dict(low=0, high=1, open_high=True, doc="share of training labels hidden"),
    "consistency": dict(low=0, doc="mean-teacher consistency weight"),
    "teacher_ema": dict(low=0, high=1, open_high=True, doc="mean-teacher EMA decay"),
    "noise": dict(low=0, doc="mean-teacher input noise, in feature SDs"),
}


def _train_params() -> dict[str, Param]:
    out = {}
    for f in fields(TrainOptions):
        default = f.default if f.default is not MISSING else None
        kind = bool if f.name == "class_weighted" else type(default)
        out[f.name] = Param(kind, default, nullable=default is None, **_OPTION_RULES[f.name])
    return out


TRAIN_PARAMS: dict[str, Param] = _train_params()
TRAIN_OPTION_NAMES = frozenset(f.name for f in fields(TrainOptions))


def options_from(params: dict[str, Any]) -> TrainOptions:
    """TrainOptions from a space's parameters; an unknown name is an error that suggests the closest."""
    for name in params:
        check_name("training option", name, TRAIN_OPTION_NAMES, error=ValueError)
    return TrainOptions(**params)


def training_device() -> str:
    """Where ``fit`` trains: a trial given (a fraction of) a GPU trains there; Ray hides GPUs from
    trials that asked for none. ``forward`` receives its indices on this device."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _stratified_pick(y: np.ndarray, among: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions taken from ``among``: round(fraction x count) of each class, leaving at least one."""
    picked = [np.empty(0, np.int64)]
    for c in np.unique(y[among]):
        members = among[y[among] == c]
        k = min(len(members) - 1, int(round(fraction * len(members))))
        picked.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(picked))


def _xavier_(model: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every linear and convolutional layer."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class FlatAdam:
    """Adam (``decoupled=False``) and AdamW (``decoupled=True``) with the arithmetic of ``torch.optim``'s
    single-tensor path (its CPU default: betas (0.9, 0.999), eps 1e-8, no amsgrad), bit for bit, on one
    flat buffer.

    The models trained inside a trial are tiny (a pooler, a two-layer MLP): a ``torch.optim`` step
    there is Python and dispatch overhead, about seven small ops per parameter tensor plus hooks and
    profiler records, and the first one imports ``torch._dynamo`` (seconds, once per worker). Here the
    parameters become views into one flat tensor, so a step is one ``cat`` of the gradients and at most eight
    elementwise ops in all. Each element sees the
    same operations in the same order as in ``torch.optim``, so the results are identical (tested on the
    CPU; on CUDA ``torch.optim`` defaults to its multi-tensor path, the same operations batched per list,
    which is not compared here). An exception inside ``fit`` leaves the parameters as views of the buffer.

    ``step`` gathers the gradients with one ``cat``. A parameter without a gradient in a step is
    skipped, as ``torch.optim`` skips it: its own step count does not advance; such steps take a
    per-parameter path. ``release`` gives every parameter its own storage again (call it when
    training ends: shared storage would follow the model into copies and files).
    """

    betas = (0.9, 0.999)
    eps = 1e-8

    def __init__(self, params: list[nn.Parameter], lr: float, weight_decay: float, decoupled: bool):
        self.params = list(params)
        self.lr, self.weight_decay, self.decoupled = float(lr), float(weight_decay), decoupled
        self.param_groups = [{"lr": self.lr}]  # read as torch.optim's (the lr reported per epoch)
        with torch.no_grad():
            self.flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.sizes = [p.numel() for p in self.params]
        offset = 0
        for p, n in zip(self.params, self.sizes):
            p.data = self.flat[offset : offset + n].view_as(p)
            offset += n
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.steps = [0] * len(self.params)

    @staticmethod
    def usable(params: list[nn.Parameter], o: "TrainOptions") -> bool:
        """Whether ``FlatAdam`` computes what ``torch.optim`` would for these options and parameters."""
        return (o.optimizer in ("adam", "adamw") and o.schedule == "none" and bool(params)
                and len({(p.device, p.dtype) for p in params}) == 1 and params[0].dtype == torch.float32
                and len({p.data_ptr() for p in params}) == len(params))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        if all(g is not None for g in grads) and len(set(self.steps)) == 1:
            self._update(self.flat, torch.cat([g.reshape(-1) for g in grads]), self.exp_avg, self.exp_avg_sq,
                         self.steps[0] + 1)
            self.steps = [s + 1 for s in self.steps]
            return
        offset = 0
        for i, (g, n) in enumerate(zip(grads, self.sizes)):  # some parameter got no gradient: one by one
            if g is not None:
                self.steps[i] += 1
                part = slice(offset, offset + n)
                self._update(self.flat[part], g.reshape(-1), self.exp_avg[part], self.exp_avg_sq[part], self.steps[i])
            offset += n

    def _update(self, param, grad, exp_avg, exp_avg_sq, step: int) -> None:
        """``torch.optim.adam._single_tensor_adam``'s non-capturable branch, op for op."""
        beta1, beta2 = self.betas
        lr, wd = self.lr, self.weight_decay
        if wd != 0:
            if self.decoupled:
                param.mul_(1 - lr * wd)
            else:
                grad = grad.add(param, alpha=wd)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
        param.addcdiv_(exp_avg, denom, value=-step_size)

    def release(self) -> None:
        with torch.no_grad():
            for p in self.params:
                p.data = p.data.clone()


def _optimizer(params: list[nn.Parameter], o: TrainOptions):
    """The optimizer for the options: :class:`FlatAdam` where it computes the same as ``torch.optim``."""
    if FlatAdam.usable(params, o):
        return FlatAdam(params, o.lr, o.weight_decay, decoupled=o.optimizer == "adamw")
    if o.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.optimizer == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, weight_decay=o.weight_decay, momentum=SGD_MOMENTUM)


def _scheduler(opt: torch.optim.Optimizer, o: TrainOptions, steps_per_epoch: int):
    """(scheduler, steps per batch?) for the option; None for a constant learning rate."""
    total = o.epochs * steps_per_epoch
    if o.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total), True
    if o.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=o.lr, total_steps=total), True
    if o.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, o.epochs // 3), gamma=STEP_GAMMA), False
    return None, False


@torch.no_grad()
def _average_into(avg: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """avg <- d avg + (1 - d) model, with d = min(decay, step / (step + 1)) so that the first few
    steps (full-batch training takes few) do not leave the average stuck at the initial weights."""
    d = min(decay, step / (step + 1))
    for a, p in zip(avg.parameters(), model.parameters()):
        a.lerp_(p, 1.0 - d)
    for a, b in zip(avg.buffers(), model.buffers()):
        a.copy_(b)


def fit(
    model: nn.Module,
    forward: Callable[..., torch.Tensor],
    y: np.ndarray,
    n_classes: int,
    options: TrainOptions,
    *,
    class_weight: np.ndarray | None = None,
    seed: int = 0,
    on_epoch: Callable[[int, dict], None] | None = None,
    sample_weight: np.ndarray | None = None,
    device: str | None = None,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
) -> dict:
    """Train ``model`` in place on the labels ``y`` (class indices of the training samples only).

    ``forward(model, idx)`` returns the (b, n_classes) logits of the samples ``idx`` (a long tensor
    on the training device: ``device``, default :func:`training_device`); it must compute with the
    module it is given, because it is also called with the EMA or teacher copy of the model. If it
    accepts a ``noise`` keyword, the mean teacher passes ``noise=options.noise`` for the caller to
    perturb its inputs (e.g. Gaussian noise of that many feature standard deviations); otherwise
    dropout alone makes the two views differ. ``on_epoch(epoch, metrics)`` is called after each
    epoch (0-based) with train_loss, val_loss, val_acc (None without an inner split) and lr, so a
    Tune trainable can report per epoch and let ASHA stop it. The model ends in eval mode on the
    device it came on, holding the weights that are the result (best epoch, EMA or teacher).

    Returns ``epochs_run``, ``best_epoch``, the final ``train_loss``, the best ``val_loss`` and
    ``val_acc``, ``per_epoch`` (the metrics given to ``on_epoch``), and the positions in ``y`` of
    the inner validation split (``val_idx``) and of the hidden labels (``hidden_idx``).

    Options for models that train their own way (each keeps the numbers of the loop it replaced):
    ``sample_weight`` (one weight per sample of ``y``) makes the training loss the weighted mean
    ``sum(w_i ce_i) / sum(w_i)`` over a batch (the inner validation loss stays unweighted);
    ``device`` trains there instead of :func:`training_device` (a model that must train on the CPU
    to be deterministic); ``generator`` draws the batch order instead of a fresh one seeded with
    ``seed`` (a caller that also draws from it in ``forward``, e.g. modality dropout, shares the
    stream); ``shuffle=False`` takes the batches in sample order, drawing nothing (full-batch
    training over samples in their given order).
    """
    o = options
    y = np.asarray(y, dtype=np.int64)
    n = len(y)
    device = device or training_device()
    home = next(model.parameters()).device
    g = generator if generator is not None else torch.Generator().manual_seed(seed)  # batch order
    rng_hide, rng_val = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    everyone = np.arange(n)
    hidden = _stratified_pick(y, everyone, o.hidden_label_fraction, rng_hide) if o.hidden_label_fraction else everyone[:0]
    labelled = np.setdiff1d(everyone, hidden)
    val = _stratified_pick(y, labelled, o.val_fraction, rng_val) if o.early_stopping else everyone[:0]
    if o.early_stopping and len(val) == 0:
        raise ValueError(f"early stopping needs an inner validation split, but {len(labelled)} labelled "
                         f"training samples leave none at val_fraction={o.val_fraction}")
    labelled = np.setdiff1d(labelled, val)
    teacher_mode = o.semi_supervised == "mean_teacher"
    train = np.union1d(labelled, hidden) if teacher_mode else labelled
    subset = len(train) < n  # else batches index the samples directly, as the loop this replaced did

    if o.init == "xavier":
        _xavier_(model)
    model.to(device)
    yt = torch.as_tensor(y, device=device)
    train_t = torch.as_tensor(train, device=device)
    val_t = torch.as_tensor(val, device=device)
    is_labelled = torch.zeros(n, dtype=torch.bool, device=device)
    is_labelled[torch.as_tensor(labelled, device=device)] = True
    if o.class_weighted is False:
        class_weight = None
    elif o.class_weighted and class_weight is None:
        class_weight = balanced_class_weight(y[labelled], n_classes)
    cw = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32, device=device)
    loss_fn = nn.CrossEntropyLoss(weight=cw)
    sw = None if sample_weight is None else torch.as_tensor(np.asarray(sample_weight), dtype=torch.float32, device=device)
    if sw is not None and len(sw) != n:
        raise ValueError(f"sample_weight has {len(sw)} weights for {n} samples")

    def ce(logits: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The training loss of the samples ``idx``: class- and (when given) sample-weighted."""
        if sw is None:
            return loss_fn(logits, yt[idx])
        w = sw[idx]
        return (F.cross_entropy(logits, yt[idx], weight=cw, reduction="none") * w).sum() / w.sum()

    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(params, o)
    batch = min(o.batch_size, len(train))
    steps_per_epoch = math.ceil(len(train) / batch)
    sched, per_batch = _scheduler(opt, o, steps_per_epoch)
    decay = o.teacher_ema if teacher_mode else o.ema
    avg = copy.deepcopy(model).requires_grad_(False) if decay or teacher_mode else None
    judged = avg if avg is not None else model  # the weights validated and returned
    with_noise = teacher_mode and o.noise > 0 and "noise" in inspect.signature(forward).parameters
    noisy = {"noise": o.noise} if with_noise else {}

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        if not teacher_mode:
            return ce(forward(model, idx), idx)
        logits = forward(model, idx, **noisy)
        lab = is_labelled[idx]
        supervised = ce(logits[lab], idx[lab]) if bool(lab.any()) else logits.sum() * 0.0
        with torch.no_grad():
            target = torch.softmax(forward(avg, idx, **noisy), dim=1)
        return supervised + o.consistency * F.mse_loss(torch.softmax(logits, dim=1), target)

    per_epoch: list[dict] = []
    best = (math.inf, -1, None)  # (val loss, epoch, state); a NaN loss never improves on it
    steps = 0
    for epoch in range(o.epochs):
        model.train()
        if avg is not None:
            avg.train()  # the teacher's dropout is part of its view
        lr_now = opt.param_groups[0]["lr"]
        total = torch.zeros((), device=device)
        perm = (torch.randperm(len(train), generator=g) if shuffle else torch.arange(len(train))).to(device)
        for start in range(0, len(train), batch):
            idx = perm[start : start + batch]
            if subset:
                idx = train_t[idx]
            loss = step_loss(idx)
            opt.zero_grad()
            loss.backward()
            if o.grad_clip:
                nn.utils.clip_grad_norm_(params, o.grad_clip)
            opt.step()
            steps += 1
            if avg is not None:
                _average_into(avg, model, decay, steps)
            if per_batch:
                sched.step()
            total += loss.detach() * len(idx)
        if sched is not None and not per_batch:
            sched.step()
        metrics = {"train_loss": float(total) / len(train), "val_loss": None, "val_acc": None, "lr": lr_now}
        if len(val):
            judged.eval()
            with torch.no_grad():
                logits = forward(judged, val_t)
                metrics["val_loss"] = float(loss_fn(logits, yt[val_t]))
                metrics["val_acc"] = float((logits.argmax(1) == yt[val_t]).float().mean())
            if metrics["val_loss"] < best[0]:
                best = (metrics["val_loss"], epoch, copy.deepcopy(judged.state_dict()))
        per_epoch.append(metrics)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        if o.early_stopping and epoch - best[1] >= o.early_stopping:
            break

    if isinstance(opt, FlatAdam):
        opt.release()
    if best[2] is not None:
        judged.load_state_dict(best[2])
    if judged is not model:
        model.load_state_dict(judged.state_dict())
    model.to(home).eval()
    best_epoch = best[1] if best[2] is not None else len(per_epoch) - 1
    return {
        "epochs_run": len(per_epoch),
        "best_epoch": best_epoch,
        "train_loss": per_epoch[-1]["train_loss"],
        "val_loss": per_epoch[best_epoch]["val_loss"],
        "val_acc": per_epoch[best_epoch]["val_acc"],
        "per_epoch": per_epoch,
        "val_idx": val,
        "hidden_idx": hidden,
    }
