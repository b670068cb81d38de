"""The report's sections, one module each, every one with the same signature:
``section(view: RunView, options: ReportOptions) -> list[str]`` (markdown lines; empty when the run
has nothing for it). Their order is ``sweeps.report.SECTIONS``."""
