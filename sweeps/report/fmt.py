"""How the report writes things: numbers and confidence intervals, markdown tables, metric labels,
the paired-test cells, and the HTML page.

A leaf: imports nothing from the report package but the statistics' result type.
"""

from __future__ import annotations

import numpy as np

from .stats import PairedSummary

LABEL = {"accuracy": "accuracy", "f1_macro": "macro-F1", "auc_macro": "macro-AUC", "balanced_accuracy": "bal. acc.",
         "rsna_score": "RSNA 2024 score (weighted log loss)"}
PAIRED_HEADER = ["n pairs", "median difference", "wins/ties/losses", "Wilcoxon signed-rank p"]


def number(x: float | None) -> str:
    """Three decimals; ``n/a`` for None, NaN and inf."""
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def ci(v: float, interval: tuple[float, float]) -> str:
    """``0.700 [0.650, 0.750]``."""
    return f"{number(v)} [{number(interval[0])}, {number(interval[1])}]"


def signed_ci(d: float, lo: float, hi: float) -> str:
    """A difference with its CI, signs shown: ``+0.020 [-0.010, +0.050]``."""
    s = lambda x: "n/a" if not np.isfinite(x) else f"{x:+.3f}"  # noqa: E731
    return f"{s(d)} [{s(lo)}, {s(hi)}]"


def mean_sd(values) -> str:
    """``mean ± SD (n=...)`` (SD with n − 1; ``n/a`` for one value)."""
    vals = np.array(values, dtype=float)
    sd = number(float(vals.std(ddof=1))) if len(vals) > 1 else "n/a"
    return f"{number(float(vals.mean()))} ± {sd} (n={len(vals)})"


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table (cells through ``str``)."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def label(metric: str) -> str:
    """A metric's name for readers (``macro-F1``); unknown metrics as they are."""
    return LABEL.get(metric, metric)


def paired_cells(s: PairedSummary) -> list:
    """The cells under PAIRED_HEADER."""
    return [s.n, number(s.median), f"{s.wins}/{s.ties}/{s.losses}", "n/a" if not np.isfinite(s.p) else f"{s.p:.3g}"]


HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.4}}
table{{border-collapse:collapse;margin:1em 0;font-size:0.9em}}th,td{{border:1px solid #ccc;padding:3px 6px}}
th{{background:#f3f3f3}}img{{max-width:100%}}code{{background:#f6f6f6}}</style></head>
<body>
{body}
</body></html>
"""


def to_html(markdown_text: str, title: str) -> str:
    """The report as a standalone HTML page (the ``markdown`` package, with tables); PNGs stay
    beside it and are referenced by their relative names, as in the markdown."""
    try:
        import markdown
    except ImportError:
        raise ImportError("HTML reports need the markdown package: pip install markdown  (or: pip install -e '.[html]')") from None
    import html

    return HTML_PAGE.format(title=html.escape(title), body=markdown.markdown(markdown_text, extensions=["tables"]))
