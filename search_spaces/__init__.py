"""Search spaces: one Python file per space, each defining ``SPEC = SweepSpec(...)``."""
