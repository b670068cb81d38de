"""Where the platform keeps its state: ``SWEEPS_HOME`` resolved in one place.

``SWEEPS_HOME`` (default ``./.sweeps``) holds the embedding cache (``cache/``), generated data
(``data/``: the synthetic cohort, stand-ins) and runs (``runs/``, unless ``--storage`` /
``SWEEPS_RUNS`` say otherwise). Read at each call, so a test or a command that sets the variable
later is obeyed. A leaf module.
"""

from __future__ import annotations

import os
from pathlib import Path


def sweeps_home() -> Path:
    """The absolute ``SWEEPS_HOME`` folder (not created here)."""
    return Path(os.environ.get("SWEEPS_HOME") or Path.cwd() / ".sweeps").resolve()
