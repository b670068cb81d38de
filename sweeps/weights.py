"""``python -m sweeps weights fetch NAME...`` and ``python -m sweeps weights list``.

``fetch`` puts pretrained weights into the local caches ahead of a run, for machines without internet:
an image encoder name (``efficientnet_lite0.ra_in1k``, ``tv:resnet50:IMAGENET1K_V2``,
``xrv:densenet121-res224-all``) or a transformers text model by hub name (``dmis-lab/biobert-v1.1``).
Point ``HF_HOME`` at the cache the offline machine will use (a shared folder), fetch, then run there
with the same ``HF_HOME`` (and ``HF_HUB_OFFLINE=1``). Without a reachable hub it fails within seconds.

``list`` shows what the hub cache (and torchvision's checkpoint folder) holds: repo, size, files and
the licence where the model card, its config or timm's pretrained config states one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub) -> None:
    """Register ``weights fetch`` and ``weights list`` on the CLI's subparsers."""
    w = sub.add_parser("weights", help="fetch pretrained weights into the local cache; list what is cached")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    f = wsub.add_parser("fetch", help="download weights into the local hub cache (HF_HOME) for offline runs")
    f.add_argument("names", nargs="+", metavar="NAME",
                   help="image encoder names (timm NAME.TAG, tv:ARCH:ENUM, xrv:...) or text models by hub name (ORG/NAME)")
    f.set_defaults(fn=main_weights)
    ls = wsub.add_parser("list", help="what the local caches hold: size and licence")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(fn=main_weights)


def main_weights(args: argparse.Namespace) -> int:
    from trainables.encoders import WeightsError
    from trainables.registry import UnknownComponentError
    from trainables.text import TextEncoderError

    try:
        if args.weights_command == "fetch":
            for name in args.names:
                print(fetch(name))
            return 0
        rows = cached()
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            print(format_cached(rows))
        return 0
    except (WeightsError, TextEncoderError, UnknownComponentError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def fetch(name: str) -> str:
    """Download ``name``'s weights into the local cache; returns a line saying where they are."""
    from trainables.encoders import resolve_weights

    if "/" in name and ":" not in name:  # a hub repo id: a transformers text model
        from trainables.text import hub_model_folder

        folder = hub_model_folder(name, fetch=True)
        return f"{name}: {folder}"
    path = resolve_weights(name, "pretrained", fetch=True)
    size = Path(path).stat().st_size
    return f"{name}: {path} ({size / 1e6:.1f} MB)"


def cached() -> list[dict]:
    """Every model repo in the hub cache (and torchvision checkpoint) with its size and licence."""
    rows = []
    from trainables.encoders import card_licence, hub_cache_dir

    root = hub_cache_dir()
    if root.exists():
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir(root)
        for repo in sorted(info.repos, key=lambda r: r.repo_id):
            licence = None
            for rev in repo.revisions:
                licence = licence or card_licence(rev.snapshot_path)
            if licence is None and repo.repo_id.startswith("timm/"):
                from timm.models import get_pretrained_cfg

                cfg = get_pretrained_cfg(repo.repo_id.split("/", 1)[1])
                licence = cfg.license if cfg else None
            rows.append({"repo": repo.repo_id, "type": repo.repo_type, "size_bytes": int(repo.size_on_disk),
                         "files": int(repo.nb_files), "revisions": [r.commit_hash[:12] for r in repo.revisions],
                         "licence": licence, "path": str(repo.repo_path)})
    import torch

    ckpt = Path(torch.hub.get_dir()) / "checkpoints"
    for f in sorted(ckpt.glob("*")) if ckpt.exists() else []:
        rows.append({"repo": f"torchvision {f.name}", "type": "checkpoint", "size_bytes": f.stat().st_size, "files": 1,
                     "revisions": [], "licence": None, "path": str(f)})
    return rows


def format_cached(rows: list[dict]) -> str:
    from trainables.encoders import hub_cache_dir

    if not rows:
        return f"nothing cached under {hub_cache_dir()} (HF_HOME); fetch with `python -m sweeps weights fetch NAME`"
    width = max(len(r["repo"]) for r in rows)
    lines = [f"hub cache: {hub_cache_dir()}", f"{'repo':<{width}}  {'size':>9}  files  licence"]
    for r in rows:
        lines.append(f"{r['repo']:<{width}}  {r['size_bytes'] / 1e6:>7.1f}MB  {r['files']:>5}  {r['licence'] or 'not stated'}")
    return "\n".join(lines)
