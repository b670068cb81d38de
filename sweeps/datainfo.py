"""``python -m sweeps data inspect COHORT``: what a cohort holds before any sweep runs on it.

Samples, patients, image modalities present and missing, label counts per target (masked blanks
counted apart), tabular and text columns, columns the leakage guard flagged, and files set aside as
unreadable. Only pseudonymous keys and file paths are printed, never a DICOM header value.

``cohort_problems`` is the one judgement of a doomed cohort (no sample, a target with one class or none
labelled, no readable image for a space that embeds images): ``run``/``resume`` refuse such a cohort
before anything is embedded, and ``data inspect`` prints the same lines.
"""

from __future__ import annotations

import logging
import time

import pandas as pd

log = logging.getLogger("sweeps.data")


def cohort_problems(cohort, targets: list[str], needs_images: bool) -> list[str]:
    """Why a sweep on ``cohort`` predicting ``targets`` could not learn anything ([] when it can): no
    sample; a target none of whose samples is labelled, or labelled with one class only (with several
    targets: only when every target is so); ``needs_images`` (the space embeds images) and not one
    readable image instance."""
    import numpy as np

    name = cohort.name
    if len(cohort.samples) == 0:
        return [f"cohort {name!r} has no samples (none left after the adapter's filters): nothing to train on"]
    out, per_target = [], []
    for t in targets:
        y = cohort.labels(t)
        labelled = y[y >= 0]
        if len(labelled) == 0:
            per_target.append(f"no sample is labelled for target {t!r}")
        elif len(np.unique(labelled)) < 2:
            only = cohort.target(t).classes[int(labelled[0])]
            per_target.append(f"target {t!r} has one class: all {len(labelled)} labelled samples are {only!r} "
                              "(a classifier needs at least two)")
    if len(per_target) == len(targets):
        out += per_target
    if needs_images and cohort.modalities and len(cohort.instances) == 0:
        q = len(cohort.quarantine)
        out.append(f"cohort {name!r} has no readable image" + (f" ({q} files quarantined as unreadable; "
                   "`python -m sweeps data inspect` lists them)" if q else "") + ", but the space embeds images")
    return out


def inspect_cohort(cohort, check_images: bool = False, targets: list[str] | None = None,
                   needs_images: bool | None = None) -> dict:
    """A plain-dict summary of ``cohort``; ``check_images`` decodes every instance and lists failures.
    ``problems``: ``cohort_problems`` for ``targets`` (default: the first, what a sweep predicts unless
    its space says otherwise) and ``needs_images`` (default: whether the cohort declares modalities)."""
    s, i = cohort.samples, cohort.instances
    present = i.groupby("modality")["sample_id"].nunique().to_dict() if len(i) else {}
    unreadable = no_readable_image(cohort)
    per_mod = {m: {"present": int(present.get(m, 0)), "missing": len(s) - int(present.get(m, 0)),
                   "unreadable": unreadable.get(m, 0), "instances": int((i["modality"] == m).sum())}
               for m in cohort.modalities}
    targets = {}
    for t in cohort.targets:
        counts = {c: int((s[t.name] == c).sum()) for c in t.classes}
        targets[t.name] = {"kind": t.kind, "counts": counts, "masked": int(s[t.name].isna().sum())}
    quarantine, undecodable = list(cohort.quarantine), []
    if check_images and len(i):
        undecodable = _decode_all(i)
        quarantine += undecodable
    needs_images = bool(cohort.modalities) if needs_images is None else needs_images
    problems = cohort_problems(cohort, targets or [t.name for t in cohort.targets[:1]], needs_images)
    if needs_images and len(i) and len(undecodable) == len(i):
        problems.append(f"cohort {cohort.name!r} has no readable image: none of its {len(i)} instances could be decoded")
    missing_tab = {c: int(s[c].isna().sum()) for c in cohort.tabular}
    empty_text = {c: int((s[c].fillna("").astype(str).str.strip() == "").sum()) for c in cohort.text}
    return {"name": cohort.name, "description": cohort.description, "samples": len(s),
            "patients": int(s["patient_id"].nunique()), "instances": len(i), "modalities": per_mod, "targets": targets,
            "tabular": {"columns": cohort.tabular, "missing": missing_tab}, "text": {"columns": cohort.text, "empty": empty_text},
            "flagged": dict(cohort.flagged), "quarantine": quarantine, "problems": problems,
            "duplicates": list(getattr(cohort, "duplicates", [])),
            "duplicates_merged": bool(getattr(cohort, "duplicates_merged", False))}


def no_readable_image(cohort, quarantined: list[dict] | None = None) -> dict[str, int]:
    """``{modality: samples}`` whose listed image files of that modality were all set aside as unreadable
    (they are samples without the modality: missing, not scored as if they had one). ``quarantined``: more
    records (``path`` [, ``frame``]) set aside later, by the embed stage."""
    i = cohort.instances
    later = {(q["path"], q.get("frame")) for q in quarantined or []}
    out: dict[str, set] = {}
    for q in cohort.quarantine:  # adapters that know which samples a file served (the manifest)
        if q.get("modality") is not None:
            out.setdefault(q["modality"], set()).update(q.get("samples", []))
    if later and len(i):
        gone = [(p, f) in later or (p, None) in later for p, f in zip(i["path"], i["frame"])]
        bad = i[gone]
        good = set(zip(i["sample_id"][[not g for g in gone]], i["modality"][[not g for g in gone]]))
        for sid, m in zip(bad["sample_id"], bad["modality"]):
            if (sid, m) not in good:
                out.setdefault(m, set()).add(sid)
    if len(i):  # a sample that still has a readable instance of the modality is not image-less
        have = set(zip(i["sample_id"], i["modality"]))
        if later:
            have = {(sid, m) for sid, m, p, f in zip(i["sample_id"], i["modality"], i["path"], i["frame"])
                    if (p, f) not in later and (p, None) not in later}
        out = {m: {sid for sid in sids if (sid, m) not in have} for m, sids in out.items()}
    return {m: len(sids) for m, sids in out.items() if sids}


def _decode_all(instances: pd.DataFrame) -> list[dict]:
    from trainables.data.images import ImageReadError, read_slice

    bad, t0 = [], time.time()
    for path, frame in zip(instances["path"], instances["frame"]):
        try:
            read_slice(path, int(frame))
        except ImageReadError as exc:
            bad.append({"path": str(path), "reason": getattr(exc, "reason", str(exc))})
    log.info("decoded %d instances in %.1fs: %d unreadable", len(instances), time.time() - t0, len(bad))
    return bad


def format_summary(info: dict, max_list: int = 20) -> str:
    out = [f"cohort {info['name']}: {info['samples']} samples, {info['patients']} patients, {info['instances']} image instances"]
    if info["description"]:
        out.append(f"  {info['description']}")
    if info["modalities"]:
        out.append("image modalities (samples with / without):")
        for m, d in info["modalities"].items():
            gone = f"; {d['unreadable']} of those without have no readable image" if d.get("unreadable") else ""
            out.append(f"  {m:<20} {d['present']:>6} / {d['missing']:<6} ({d['instances']} instances{gone})")
    else:
        out.append("image modalities: none")
    out.append(f"targets ({len(info['targets'])}):")
    for name, t in list(info["targets"].items())[:max_list]:
        counts = ", ".join(f"{c}={n}" for c, n in t["counts"].items())
        masked = f", masked (not labelled)={t['masked']}" if t["masked"] else ""
        out.append(f"  {name:<40} {t['kind']:<10} {counts}{masked}")
    if len(info["targets"]) > max_list:
        out.append(f"  ... and {len(info['targets']) - max_list} more")
    tab = info["tabular"]
    if tab["columns"]:
        miss = ", ".join(f"{c} ({n} missing)" if n else c for c, n in tab["missing"].items())
        out.append(f"tabular columns ({len(tab['columns'])}): {miss}")
    if info["text"]["columns"]:
        out.append("text columns: " + ", ".join(f"{c} ({n} empty)" for c, n in info["text"]["empty"].items()))
    if info["flagged"]:
        out.append("flagged columns (left out of the features unless the space asks for them):")
        out += [f"  {c}: {why}" for c, why in info["flagged"].items()]
    else:
        out.append("flagged columns: none")
    dups = info.get("duplicates") or []
    if dups:
        how = "grouped into one split group each" if info.get("duplicates_merged") else "NOT grouped (merge_duplicates=False)"
        out.append(f"identical images under different patients: {len(dups)} ({how})")
        out += [f"  patients {' + '.join(d['patients'])}: samples {', '.join(d['samples'])}" for d in dups[:max_list]]
        if len(dups) > max_list:
            out.append(f"  ... and {len(dups) - max_list} more")
    if info.get("problems"):
        out.append("cannot run a sweep on this cohort:")
        out += [f"  {line}" for line in info["problems"]]
    q = info["quarantine"]
    out.append(f"quarantined files: {len(q)}")
    out += [f"  {r['path']}: {r['reason']}" for r in q[:max_list]]
    if len(q) > max_list:
        out.append(f"  ... and {len(q) - max_list} more")
    return "\n".join(out)
