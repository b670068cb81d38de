"""Fusions: per-modality vectors -> one vector per sample.

Contract: ``fuse({modality: (B, D_m)}, presence (B, M)) -> (B, D_fused)`` with modalities in a fixed
order (the image modalities, then ``text`` and ``tabular`` when the trial uses them; column k of
``presence`` belongs to the k-th modality); a missing modality is never a crash, and its vector's
content never reaches the output. A fusion with learned parts also has
``fit(vectors, presence, y, n_classes, class_weight=None, seed=0)``, which the trial calls with the
fold's training samples only; ``fuse`` is then applied to every sample. ``fit`` starts afresh each
call (one instance serves every fold) and depends on its arguments only (not on the global RNG).

Missing modalities (``missing`` on the fusions below; ``concat`` keeps its zero fill):

- ``zero``: the raw zero vector stands in for the absent modality;
- ``mean``: the mean of the training samples that have the modality;
- ``neutral``: a vector per modality learned with the fusion, initialised at the training mean (it
  moves only where training sees the modality absent: really missing, or dropped by
  ``modality_dropout``; weight decay pulls it back toward the mean). It needs a trained fusion, so
  ``concat_impute`` does not offer it.

``modality_dropout`` (learned fusions): during training each present modality of a sample is hidden
with that probability (never all of a sample's modalities), so the fusion learns to cope with
missing inputs.

Cross-attention between image instances and report tokens is ``cross_attention``
(``trainables/fusion/cross_attention.py``): it reads the instance bags and the texts themselves (a
fusion with ``uses_instances = True`` gets them from the pipeline), so it replaces the pooling rather
than following it.

Layout: ``base`` holds the registry (:data:`FUSIONS`) and the shared helpers (a leaf: it imports no
fusion); each fusion module registers its fusions, with their declared parameters, when imported;
this ``__init__`` imports them all. A new fusion is one new module here plus its import below.
"""


from .base import FUSIONS, MISSING, check_fitted, drop_modalities, present_means
from .learned import FusionNet, LearnedFusion
from .concat import ConcatFusion, ConcatImputeFusion
from .attention import AttentionFusion
from .cnn import CNNFusion
from .gated import GatedFusion
from .ensemble import PerModalityEnsembleFusion
from .cross_attention import CrossAttentionFusion

__all__ = ["FUSIONS", "MISSING", "check_fitted", "drop_modalities", "present_means", "FusionNet", "LearnedFusion",
           "ConcatFusion", "ConcatImputeFusion", "AttentionFusion", "CNNFusion", "GatedFusion",
           "PerModalityEnsembleFusion", "CrossAttentionFusion"]
