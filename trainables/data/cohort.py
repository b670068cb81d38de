"""The canonical cohort form every adapter produces and every later stage consumes.

A cohort is three things:

- ``samples``: one row per sample (a study): ``sample_id`` (unique), ``patient_id`` (the grouping key
  for every split: a patient never sits on both sides), one column per target, tabular columns, text
  columns.
- ``instances``: one row per image instance: ``sample_id``, ``modality``, ``order`` (slice position,
  ascending), ``path`` (absolute), ``frame`` (frame index for multi-frame files, 0 otherwise).
- ``targets``: what is predicted and how.

Identifiers: ``sample_id`` and ``patient_id`` are the adapter's pseudonymous keys (folder names,
generator codes, hashed values). Nothing read from a DICOM header that identifies a person (names,
ids, birth dates) is ever placed in a cohort: the DICOM reader only returns pixels and geometry.

A sample may lack any modality: that is a sample with no instance rows for it, never an error.

Targets may be *masked*: a blank (NaN) in a target column means "not labelled for this target"
(RSNA's blanks, CheXpert's ignored uncertain labels), never a class. A sweep on that target uses only
the samples labelled for it; ``labels()`` gives -1 for the masked ones.

Adapters also report what they set aside and what they suspect:

- ``quarantine``: files that could not be read, as ``{"path", "reason"}`` records (the run goes on
  without them; an adapter's ``strict=True`` raises instead).
- ``flagged``: tabular (and text) columns the leakage guard (or the adapter) flagged, ``{column: reason}``;
  flagged columns are not in ``tabular`` / ``text`` unless the user asked for them.
- ``duplicates``: identical images found under different patients (:mod:`trainables.data.duplicates`),
  ``{"samples", "patients", "paths"}`` records; ``merged``: whether their patients now share one
  ``patient_id`` (the split key).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

TargetKind = Literal["multiclass", "binary"]
MASKED = -1  # the class index of a sample not labelled for a target


@dataclass(frozen=True)
class Target:
    """One predicted column. ``classes`` lists the labels in index order."""

    name: str
    kind: TargetKind
    classes: tuple[str, ...]
    masked: bool = False  # NaN in the column means "not labelled for this target" (excluded, not a class)


class CohortError(ValueError):
    """A cohort that breaks the contract; the message names the row, column or file."""


@dataclass
class Cohort:
    name: str
    samples: pd.DataFrame
    instances: pd.DataFrame
    targets: list[Target]
    modalities: list[str]
    tabular: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    description: str = ""
    quarantine: list[dict] = field(default_factory=list)  # [{"path": ..., "reason": ...}]
    flagged: dict[str, str] = field(default_factory=dict)  # tabular column -> why it was flagged
    duplicates: list[dict] = field(default_factory=list)  # identical images under different patients
    duplicates_merged: bool = False  # their patients share one patient_id

    def __post_init__(self) -> None:
        self.validate()

    # -- contract -------------------------------------------------------------------------------
    def validate(self) -> None:
        s, i = self.samples, self.instances
        for col in ("sample_id", "patient_id"):
            if col not in s.columns:
                raise CohortError(f"cohort {self.name!r}: samples table has no {col!r} column")
        dup = s["sample_id"][s["sample_id"].duplicated()]
        if len(dup):
            raise CohortError(f"cohort {self.name!r}: duplicate sample_id {dup.iloc[0]!r}")
        for t in self.targets:
            if t.name not in s.columns:
                raise CohortError(f"cohort {self.name!r}: target column {t.name!r} missing from samples")
            bad = ~s[t.name].isin(t.classes)
            if t.masked:
                bad &= s[t.name].notna()
            if bad.any():
                row = s[bad].iloc[0]
                raise CohortError(
                    f"cohort {self.name!r}: sample {row['sample_id']!r} has label {row[t.name]!r} "
                    f"for target {t.name!r}; known labels: {list(t.classes)}"
                )
        for col in ("sample_id", "modality", "order", "path", "frame"):
            if col not in i.columns:
                raise CohortError(f"cohort {self.name!r}: instances table has no {col!r} column")
        unknown_sample = ~i["sample_id"].isin(s["sample_id"])
        if unknown_sample.any():
            raise CohortError(
                f"cohort {self.name!r}: instance {i[unknown_sample].iloc[0]['path']!r} belongs to "
                f"unknown sample {i[unknown_sample].iloc[0]['sample_id']!r}"
            )
        unknown_mod = ~i["modality"].isin(self.modalities)
        if unknown_mod.any():
            raise CohortError(
                f"cohort {self.name!r}: instance {i[unknown_mod].iloc[0]['path']!r} has modality "
                f"{i[unknown_mod].iloc[0]['modality']!r}; declared modalities: {self.modalities}"
            )
        for col in self.tabular + self.text:
            if col not in s.columns:
                raise CohortError(f"cohort {self.name!r}: declared column {col!r} missing from samples")
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise CohortError(f"cohort {self.name!r}: a target is declared twice: {names}")
        leak = set(names) & set(self.tabular + self.text)
        if leak:
            raise CohortError(f"cohort {self.name!r}: target column(s) {sorted(leak)} also declared as features")

    # -- helpers --------------------------------------------------------------------------------
    def target(self, name: str | None = None) -> Target:
        if name is None:
            return self.targets[0]
        for t in self.targets:
            if t.name == name:
                return t
        raise CohortError(f"cohort {self.name!r} has no target {name!r}; targets: {[t.name for t in self.targets]}")

    def labels(self, name: str | None = None) -> np.ndarray:
        """Integer class index per sample, in ``samples`` order; ``MASKED`` (-1) where not labelled."""
        t = self.target(name)
        lookup = {c: k for k, c in enumerate(t.classes)}
        return self.samples[t.name].map(lookup).fillna(MASKED).to_numpy(dtype=np.int64)

    def labelled(self, name: str | None = None) -> "Cohort":
        """The cohort restricted to the samples labelled for one target (all of them if unmasked)."""
        return self.subset(self.labels(name) != MASKED)

    def subset(self, keep: np.ndarray) -> "Cohort":
        """The cohort restricted to the samples where ``keep`` (a boolean per sample) is true."""
        if keep.all():
            return self
        samples = self.samples[keep].reset_index(drop=True)
        instances = self.instances[self.instances["sample_id"].isin(samples["sample_id"])].reset_index(drop=True)
        return Cohort(name=self.name, samples=samples, instances=instances, targets=self.targets,
                      modalities=self.modalities, tabular=self.tabular, text=self.text, description=self.description,
                      quarantine=self.quarantine, flagged=self.flagged, duplicates=self.duplicates,
                      duplicates_merged=self.duplicates_merged)

    def fingerprint(self, content: bool = True) -> str:
        """A hash of the cohort's name and instance table and, with ``content``, of every instance
        file's bytes: what an image encoder reads.

        This is the cohort part of every embedding cache key: change a pixel or an instance (its
        sample, modality, order or frame) and the key changes; a label, a tabular value or a text does
        not (the embeddings do not depend on them, so relabelling keeps the cache). What a trial reads
        beyond the pixels is covered by ``fingerprints``.
        """
        h = hashlib.blake2b(digest_size=16)
        h.update(self.name.encode())
        cols = ["sample_id", "modality", "order", "frame"]
        inst = self.instances.sort_values(["sample_id", "modality", "order"])
        h.update(pd.util.hash_pandas_object(inst[cols], index=False).values.tobytes())
        if content:
            for p in inst["path"]:
                try:
                    with open(p, "rb") as fh:
                        h.update(hashlib.blake2b(fh.read(), digest_size=16).digest())
                except OSError:  # a file gone since the adapter listed it: the embed stage quarantines it
                    h.update(b"<unreadable>")
        return h.hexdigest()

    def fingerprints(self, images: str | None = None) -> dict[str, str]:
        """One hash per part of what a trial reads, so a resumed run can refuse a changed cohort and
        say which part changed: ``images`` (``fingerprint()``, given when already computed),
        ``samples`` (sample and patient keys, the split's grouping), ``labels`` (the target columns
        and their classes), ``tabular`` and ``text`` (the declared columns' names and values). Row
        order does not count: samples are hashed sorted by ``sample_id``."""
        s = self.samples.sort_values("sample_id", kind="stable").reset_index(drop=True)

        def digest(cols: list[str], extra: str = "") -> str:
            h = hashlib.blake2b(digest_size=16)
            h.update(repr((cols, extra)).encode())
            if cols:
                h.update(pd.util.hash_pandas_object(s[cols].astype(object), index=False).values.tobytes())
            return h.hexdigest()

        targets = [t.name for t in self.targets]
        return {"images": images or self.fingerprint(), "samples": digest(["sample_id", "patient_id"]),
                "labels": digest(["sample_id", *targets], repr([(t.name, t.kind, t.classes, t.masked) for t in self.targets])),
                "tabular": digest(["sample_id", *self.tabular]), "text": digest(["sample_id", *self.text])}
