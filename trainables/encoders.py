"""Image encoders by registered name, and the named preprocessing steps that feed them.

Encoders are frozen feature extractors (classifier removed, global pooled features). Random
initialisation (seeded, so the cache key is stable) is the default, because this platform runs
offline: a model hub is never contacted. ``weights=PATH`` loads a local state dict (``.pt``,
``.pth``, ``.bin`` or ``.safetensors``); keys are matched by name, and if the names differ but the
tensors match one to one in order and shape (as with weights exported from another library),
by order. Anything else is an error that says what did not match.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .registry import Registry

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass(frozen=True)
class EncoderSpec:
    source: str  # "timm" or "torchvision"
    arch: str
    input_size: int = 64
    paper: str = ""


ENCODERS = Registry("encoder", {
    "resnet18": EncoderSpec("timm", "resnet18", 64, "He et al., CVPR 2016"),
    "resnet50": EncoderSpec("timm", "resnet50", 64, "He et al., CVPR 2016"),
    "efficientnet_b0": EncoderSpec("timm", "efficientnet_b0", 64, "Tan & Le, ICML 2019"),
    "efficientnet_lite0": EncoderSpec("timm", "efficientnet_lite0", 64, "Tan & Le, ICML 2019 (lite variant)"),
    "vit_tiny": EncoderSpec("timm", "vit_tiny_patch16_224", 64, "Dosovitskiy et al., ICLR 2021"),
    "tv_resnet18": EncoderSpec("torchvision", "resnet18", 64, "He et al., CVPR 2016 (torchvision)"),
})

INIT_SEED = 0


class WeightsError(ValueError):
    pass


def create_encoder(name: str, input_size: int | None = None, weights: str | None = None) -> tuple[torch.nn.Module, int]:
    """Build the frozen encoder ``name``; returns (module in eval mode, feature dim)."""
    spec = ENCODERS[ENCODERS.check(name)]
    size = input_size or spec.input_size
    torch.manual_seed(INIT_SEED)
    if spec.source == "timm":
        import timm

        kwargs = {"img_size": size} if spec.arch.startswith("vit") else {}
        model = timm.create_model(spec.arch, pretrained=False, num_classes=0, **kwargs)
        dim = model.num_features
    else:
        import torchvision

        model = getattr(torchvision.models, spec.arch)(weights=None)
        dim = model.fc.in_features
        model.fc = torch.nn.Identity()
    if weights:
        load_weights(model, weights)
    model.eval().requires_grad_(False)
    return model, int(dim)


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: not a state dict (got {type(state).__name__})")
    return state


def load_weights(model: torch.nn.Module, weights: str | os.PathLike) -> str:
    """Load a local state dict into ``model``; returns how ("by name" or "by order")."""
    path = Path(weights)
    state = _read_state(path)
    own = model.state_dict()
    # the classifier was removed (num_classes=0): ignore classifier tensors in the file
    state_n = {k: v for k, v in state.items() if k in own}
    if state_n and all(state_n[k].shape == own[k].shape for k in state_n) and len(state_n) == len(own):
        model.load_state_dict(state_n)
        return "by name"
    ours = [(k, v) for k, v in own.items() if not k.endswith("num_batches_tracked")]
    theirs = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    if len(theirs) >= len(ours) and all(tv.shape == ov.shape for (_, tv), (_, ov) in zip(theirs, ours)):
        model.load_state_dict({k: tv for (k, _), (_, tv) in zip(ours, theirs)}, strict=False)
        return "by order"
    missing = [k for k in own if k not in state][:5]
    raise WeightsError(f"{path}: {len(state)} tensors do not fit this encoder's {len(own)} "
                       f"(by name, missing e.g. {missing}; by order, shapes differ)")


def weights_id(weights: str | None) -> str:
    """The part of a cache key that names the weights: a content hash of the file, or the seeded init."""
    if not weights:
        return f"random-init-seed{INIT_SEED}"
    h = hashlib.blake2b(digest_size=12)
    with open(weights, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- preprocessing --------------------------------------------------------------------------------
# A preprocessing is a '+'-joined string of step names, e.g. "grayscale_norm+imagenet_norm", so a
# search space can choose among pipelines with a plain categorical. Per-slice steps run on numpy
# (H, W) float32; resizing to the encoder's input size always happens after them; "imagenet_norm"
# (if present) runs last, on the 3-channel tensor.

def grayscale_norm(img: np.ndarray) -> np.ndarray:
    """Robust min-max to [0, 1] (0.5th/99.5th percentiles), clipping outliers."""
    lo, hi = np.percentile(img, [0.5, 99.5])
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def hist_eq(img: np.ndarray, bins: int = 256) -> np.ndarray:
    """Histogram equalisation to [0, 1] (the lumbar seed's cv2.equalizeHist, on float data)."""
    hist, edges = np.histogram(img, bins=bins)
    cdf = hist.cumsum().astype(np.float64)
    cdf = (cdf - cdf.min()) / max(cdf.max() - cdf.min(), 1)
    return np.interp(img.ravel(), edges[:-1], cdf).reshape(img.shape).astype(np.float32)


SLICE_STEPS = Registry("preprocessing step", {"grayscale_norm": grayscale_norm, "hist_eq": hist_eq})
TENSOR_STEPS = ("imagenet_norm",)
_ALL_STEPS = Registry("preprocessing step", {**SLICE_STEPS, "imagenet_norm": None, "resize": None})
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def parse_preprocessing(spec: str, where: str = "preprocessing") -> tuple[list[str], bool]:
    steps = [s for s in spec.split("+") if s]
    if not steps:
        raise ValueError(f"empty preprocessing at {where}")
    slice_steps, imagenet = [], False
    for s in steps:
        if s in TENSOR_STEPS:
            imagenet = True
            continue
        if s == "resize":
            continue  # always applied; accepted for readability
        _ALL_STEPS.check(s, where)
        slice_steps.append(s)
    if not slice_steps:
        slice_steps = ["grayscale_norm"]  # encoders need a bounded range; never feed raw HU/MR values
    return slice_steps, imagenet


class Preprocessor:
    """Turns 2-D slices into an encoder batch (B, 3, S, S), channels_last."""

    def __init__(self, spec: str, input_size: int):
        self.spec = spec
        self.steps, self.imagenet = parse_preprocessing(spec)
        self.size = input_size

    def slice(self, img: np.ndarray) -> np.ndarray:
        for s in self.steps:
            img = SLICE_STEPS[s](img)
        return img

    def slices(self, imgs: list[np.ndarray]) -> list[np.ndarray]:
        """``slice`` over a batch; same-size slices are normalised in one vectorised pass."""
        if not imgs or len({im.shape for im in imgs}) > 1:
            return [self.slice(im) for im in imgs]
        X = np.stack(imgs).astype(np.float32)  # (B, H, W)
        for s in self.steps:
            if s == "grayscale_norm":
                lo, hi = np.percentile(X.reshape(len(X), -1), [0.5, 99.5], axis=1)  # (B,) each
                lo, hi = lo[:, None, None], hi[:, None, None]
                X = np.clip((X - lo) / np.maximum(hi - lo, 1e-6), 0, 1).astype(np.float32)
            else:
                X = np.stack([SLICE_STEPS[s](x) for x in X])
        return list(X)

    def batch(self, imgs: list[np.ndarray]) -> torch.Tensor:
        out = []
        for im in imgs:  # slices may differ in size: resize one by one
            t = torch.from_numpy(np.ascontiguousarray(im))[None, None]  # (1, 1, H, W)
            if t.shape[-2:] != (self.size, self.size):
                t = torch.nn.functional.interpolate(t, size=(self.size, self.size), mode="bilinear",
                                                    antialias=True, align_corners=False)
            out.append(t)
        x = torch.cat(out).expand(-1, 3, -1, -1)  # (B, 3, S, S), grayscale replicated
        if self.imagenet:
            mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
            x = (x - mean) / std
        return x.contiguous(memory_format=torch.channels_last)
