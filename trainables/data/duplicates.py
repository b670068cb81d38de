"""Identical images under different patients: found at load, and their patients grouped together.

A dataset assembled from several sources can hold the same picture twice under two patient keys (the
COVID subset has five). Patient grouping then puts the two copies on both sides of a split, and the model
is scored on an image it trained on. :func:`find` hashes the decoded pixels of every instance
(:func:`~trainables.data.quarantine.pixel_hash`: a copy, or the same pixels in another file, hash alike)
and returns the groups of samples sharing an image across more than one patient; :func:`merge_patients`
gives all the patients of a group one split key (``p1+p2``), so that a patient-grouped split keeps them on
one side. Only pseudonymous keys and paths are recorded.
"""

from __future__ import annotations

import pandas as pd

from .quarantine import pixel_hash

__all__ = ["find", "merge_patients", "describe"]


def find(samples: pd.DataFrame, instances: pd.DataFrame) -> list[dict]:
    """``[{"samples": [...], "patients": [...], "paths": [...]}]``: each set of samples whose instances share
    an identical image (decoded pixels) while belonging to two or more patients; samples of one patient
    sharing an image are not listed (grouping already keeps them together)."""
    if not len(instances):
        return []
    patient = dict(zip(samples["sample_id"], samples["patient_id"]))
    by_hash: dict[str, list[tuple[str, str]]] = {}
    for sid, path in zip(instances["sample_id"], instances["path"]):
        h = pixel_hash(str(path))
        if h is not None:
            by_hash.setdefault(h, []).append((sid, str(path)))
    out = []
    for rows in by_hash.values():
        sids = list(dict.fromkeys(s for s, _ in rows))
        patients = sorted({str(patient[s]) for s in sids})
        if len(patients) > 1:
            out.append({"samples": sids, "patients": patients, "paths": sorted({p for _, p in rows})})
    return sorted(out, key=lambda d: d["patients"])


def merge_patients(samples: pd.DataFrame, groups: list[dict]) -> pd.DataFrame:
    """``samples`` with the patients of linked duplicate groups sharing one ``patient_id`` (their keys
    joined with '+', sorted): connected groups merge transitively."""
    parent: dict[str, str] = {}

    def root(p: str) -> str:
        while parent.get(p, p) != p:
            p = parent[p]
        return p

    for g in groups:
        first = root(g["patients"][0])
        for p in g["patients"][1:]:
            parent[root(p)] = first
    if not parent:
        return samples
    members: dict[str, list[str]] = {}
    for p in {q for g in groups for q in g["patients"]}:
        members.setdefault(root(p), []).append(p)
    new_key = {p: "+".join(sorted(ms)) for ms in members.values() for p in ms}
    out = samples.copy()
    out["patient_id"] = out["patient_id"].map(lambda p: new_key.get(str(p), p))
    return out


def describe(groups: list[dict], merged: bool) -> str:
    """One line for a cohort's description / the report."""
    if not groups:
        return ""
    n_samples = sum(len(g["samples"]) for g in groups)
    what = "their patients grouped together for every split" if merged else \
        "NOT grouped (merge_duplicates=False): copies may sit on both sides of a split"
    return f"{len(groups)} identical image(s) under different patients ({n_samples} samples): {what}"
