"""Stand-in generators: small datasets written in a real cohort's on-disk layout, for tests and ``--smoke``.

One module per real-dataset adapter of :mod:`trainables.data`, named like it (``standins.rsna`` for
``trainables.data.rsna``), with the adapter's ``NAME`` and ``standin(out, *, seed=0, ...) -> Path``
(``out`` must not exist; written in a temporary folder renamed into place). :mod:`.dicom` holds the one
DICOM writer they (and the synthetic cohort) use. The readers never import these modules.
"""
