"""The "Simulated missing modalities" section (``missing_eval``): a modality removed from a fraction
of the scored samples at test time, for the best configuration of each fusion / missing-modality
strategy and pooling."""

from __future__ import annotations

from ..fmt import label, number, table
from ..run import ReportOptions, Row, RunView


def section(view: RunView, options: ReportOptions) -> list[str]:
    keyed = [r for r in view.rows if any(k.startswith("missing/") for k in r.metrics)]
    if not keyed:
        return []
    metric = view.metric if view.metric in ("f1_macro", "auc_macro", "balanced_accuracy") else "auc_macro"

    by_strategy: dict[str, Row] = {}
    for r in view.ranked(keyed):
        by_strategy.setdefault(f"{_strategy(r)} / {r.arm}", r)
    mods = sorted({k.split("/")[1] for r in keyed for k in r.metrics if k.startswith("missing/")})
    fracs = sorted({float(k.split("/")[2]) for r in keyed for k in r.metrics if k.startswith("missing/")})
    L = ["## Simulated missing modalities", "",
         f"{label(metric)} of the best configuration of each fusion strategy / pooling when a modality is removed at "
         "test time from a fraction of the scored samples (models trained as usual; removals nested: a sample "
         "removed at 25% is also removed at 50%). n = " f"{len(view.y)}.", ""]
    cells = []
    for name, r in by_strategy.items():
        for m in mods:
            vals = [r.metrics.get(f"missing/{m}/{fr:g}/{metric}") for fr in fracs]
            if all(x is None for x in vals):
                continue
            cells.append([name, f"`{m}`"] + [number(x) if x is not None else "—" for x in vals])
    L.append(table(["fusion / pooling", "modality removed"] + [f"{fr:.0%} removed" for fr in fracs], cells))
    L.append("")
    return L


def _strategy(r: Row) -> str:
    """A row's fusion with its missing-modality settings: ``cnn (missing=neutral, modality_dropout=0.2)``."""
    f = r.config.get("fusion", "concat")
    if isinstance(f, dict):
        name = f.get("name")
        params = f.get(name, {}) if isinstance(name, str) else {}
        extra = ", ".join(f"{k}={params[k]}" for k in ("missing", "modality_dropout") if k in params)
        return f"{name}" + (f" ({extra})" if extra else "")
    return str(f)
