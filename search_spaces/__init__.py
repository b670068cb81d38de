"""Search spaces: one Python file per space, each defining ``SPEC = SweepSpec(...)``.

The files are found by name on the space search path (``sweeps.spec.space_path``: the folders in
``SWEEPS_SPACES``, then this one) and executed as files, never imported as this package; the
``__init__`` only lets packaging ship them.
"""
