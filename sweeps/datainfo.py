"""``python -m sweeps data inspect COHORT``: what a cohort holds before any sweep runs on it.

Samples, patients, image modalities present and missing, label counts per target (masked blanks
counted apart), tabular and text columns, columns the leakage guard flagged, and files set aside as
unreadable. Only pseudonymous keys and file paths are printed, never a DICOM header value.
"""

from __future__ import annotations

import logging
import time

import pandas as pd

log = logging.getLogger("sweeps.data")


def inspect_cohort(cohort, check_images: bool = False) -> dict:
    """A plain-dict summary of ``cohort``; ``check_images`` decodes every instance and lists failures."""
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
    quarantine = list(cohort.quarantine)
    if check_images and len(i):
        quarantine += _decode_all(i)
    missing_tab = {c: int(s[c].isna().sum()) for c in cohort.tabular}
    empty_text = {c: int((s[c].fillna("").astype(str).str.strip() == "").sum()) for c in cohort.text}
    return {"name": cohort.name, "description": cohort.description, "samples": len(s),
            "patients": int(s["patient_id"].nunique()), "instances": len(i), "modalities": per_mod, "targets": targets,
            "tabular": {"columns": cohort.tabular, "missing": missing_tab}, "text": {"columns": cohort.text, "empty": empty_text},
            "flagged": dict(cohort.flagged), "quarantine": quarantine,
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
    q = info["quarantine"]
    out.append(f"quarantined files: {len(q)}")
    out += [f"  {r['path']}: {r['reason']}" for r in q[:max_list]]
    if len(q) > max_list:
        out.append(f"  ... and {len(q) - max_list} more")
    return "\n".join(out)
