"""The "Encoders" section: for each image encoder the run embedded with, the architecture, the weights
(pretrained tag, packaged or local file with its content hash, or seeded random init), the input
configuration (size, interpolation, mean, std) and the licence where the model card states one."""

from __future__ import annotations

from ..run import ReportOptions, RunView


def section(view: RunView, options: ReportOptions) -> list[str]:
    encoders = view.meta.get("encoders") or []
    if not encoders:
        return []
    from trainables.encoders import format_encoder_lines  # torch and timm: only when there is something to say

    return ["## Encoders", "", *format_encoder_lines(encoders), ""]
