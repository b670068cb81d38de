"""PNG plots for the report (matplotlib, Agg backend): ROC curves, confusion matrix, the paired
pooling comparison and attention weights over slices. Each function writes one file and returns its
name."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.metrics import confusion_matrix, roc_curve  # noqa: E402

_META = {"Software": None}  # no version stamp: the same run gives the same bytes


def roc(curves: dict[str, np.ndarray], y: np.ndarray, classes, out: Path, name: str = "roc.png") -> str:
    """One-vs-rest ROC per class, one panel per configuration in ``curves`` ({label: proba})."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 4), squeeze=False)
    for ax, (label, proba) in zip(axes[0], curves.items()):
        for c, cname in enumerate(classes):
            if 0 < (y == c).sum() < len(y):
                fpr, tpr, _ = roc_curve(y == c, proba[:, c])
                ax.plot(fpr, tpr, label=f"{cname} (n={(y == c).sum()})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(title=label, xlabel="false positive rate", ylabel="true positive rate")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / name, dpi=100, metadata=_META)
    plt.close(fig)
    return name


def confusion(y: np.ndarray, proba: np.ndarray, classes, title: str, out: Path, name: str = "confusion.png") -> str:
    cm = confusion_matrix(y, proba.argmax(1), labels=np.arange(len(classes)))
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(cm, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes, yticklabels=classes,
           xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    fig.savefig(out / name, dpi=100, metadata=_META)
    plt.close(fig)
    return name


def paired(base: np.ndarray, other: np.ndarray, base_name: str, other_name: str, metric: str, out: Path,
           name: str = "paired.png") -> str:
    """Each matched configuration as a point: x = base pooling's score, y = the other's."""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    lo, hi = float(min(base.min(), other.min())) - 0.02, float(max(base.max(), other.max())) + 0.02
    ax.plot([lo, hi], [lo, hi], "k:", lw=0.8)
    ax.scatter(base, other, s=22)
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel=f"{base_name} {metric}", ylabel=f"{other_name} {metric}",
           title=f"{other_name} vs {base_name} (n={len(base)} pairs)")
    fig.tight_layout()
    fig.savefig(out / name, dpi=100, metadata=_META)
    plt.close(fig)
    return name


def attention(panels: list[tuple[str, dict[str, np.ndarray]]], title: str, out: Path, name: str = "attention.png") -> str:
    """One subplot per sample: attention weight against slice index, one line per modality, its
    dotted line at 1/slices (uniform attention) (``panels``: [(subplot title, {modality: weights of
    the real slices})])."""
    fig, axes = plt.subplots(len(panels), 1, figsize=(6.4, 2.3 * len(panels)), squeeze=False)
    for ax, (label, weights) in zip(axes[:, 0], panels):
        for m, w in weights.items():
            if len(w):
                (line,) = ax.plot(np.arange(len(w)), w, marker="o", ms=3, label=f"{m} ({len(w)} slices)")
                ax.axhline(1 / len(w), color=line.get_color(), ls=":", lw=0.8)  # uniform weights, for scale
            else:
                ax.plot([], [], label=f"{m} (missing)")
        ax.set(title=label, xlabel="slice index (position order)", ylabel="attention weight")
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out / name, dpi=100, metadata=_META)
    plt.close(fig)
    return name


def reliability(bins: list[tuple[float, float, int]], title: str, out: Path, name: str = "reliability.png") -> str:
    """A reliability diagram: accuracy against mean top-class confidence per bin (marker size ~ count)."""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="perfect calibration")
    if bins:
        c, a, n = (np.array(v) for v in zip(*bins))
        ax.plot(c, a, "-o", ms=3)
        ax.scatter(c, a, s=20 + 180 * n / n.max(), alpha=0.5)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top class)", ylabel="accuracy", title=title)
    fig.tight_layout()
    fig.savefig(out / name, dpi=100, metadata=_META)
    plt.close(fig)
    return name
