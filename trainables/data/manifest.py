"""Generic manifest adapter: a CSV or parquet table, one row per sample, becomes a cohort.

The manifest names, per row, the sample and patient keys, one or more target columns, tabular and text
columns, and image columns. Each image column maps to a modality and holds, per row, one of:

- the path of one image file (DICOM, PNG/JPEG/BMP/TIFF, ``.npy``);
- the path of a folder of slices (a DICOM series, ordered by :func:`~trainables.data.images.order_series`:
  position along the slice normal, then Instance Number, then natural file-name order);
- several such paths separated by ``;`` (instances follow in the order given).

Relative paths are resolved against ``image_root`` (default: the manifest's folder). A blank cell means the
sample has no image of that modality. Several image columns may feed one modality (in column order).

Validation collects every problem before raising one :class:`CohortError` that lists them (capped at
``MAX_PROBLEMS`` lines, with a count of the rest): missing columns (with a did-you-mean), blank or
duplicate sample ids, blank patient ids, unknown and blank labels (blank is allowed only for a target
named in ``masked_targets``), and, with ``strict``, missing and unreadable image files. Lines are
numbered as in a spreadsheet (the header is line 1) for CSV, rows from 1 for parquet.

Without ``strict``, a missing image path is a missing instance (counted in the cohort's description),
and an unreadable file (read by :func:`read_slice`) goes to ``cohort.quarantine``.

Tabular columns are kept as read: numbers stay numeric, anything else is categorical, blanks are NaN. A
column that is numeric but for a few cells (``45 y``, ``>90``) is read as numeric, those cells as missing,
and a warning names the lines and values (list it in ``categorical`` to keep it as categories instead).
Text columns: blank -> "".

Multi-label targets (NIH ChestX-ray14's ``Finding Labels``: ``Effusion|Atelectasis``, ``No Finding``):
``multilabel={"Finding Labels": {"sep": "|", "none": "No Finding"}}`` makes one binary target per label
(classes ``("0", "1")``, as CheXpert's), named by the label (``column:label`` when the label is already a
column's name); the order of labels in a cell does not matter; ``none`` means no label; a blank cell is
an error unless the column is in ``masked_targets`` (then every label of that row is masked). A target
column whose values look multi-label but is not declared gets a warning.

Multi-frame files (a multi-frame DICOM, a 3-D ``.npy``, a multi-page TIFF): each frame is an instance
(``frame`` set, in frame order, like the slices of a series); ``frames="first"`` keeps frame 0 only and
says how many were left out.

Checks after the table is valid, before anything slow:

- leakage (``leakage=True``): each tabular column alone (a depth-3 tree) and each text column alone
  (TF-IDF + logistic regression, naming the terms that carry the label) is scored out of fold, grouped
  by patient, against each target; a column reaching ``threshold`` / ``text_threshold`` is put in
  ``cohort.flagged`` and left out of the features unless named in ``allow_leaky``
  (:mod:`trainables.data.leakage`);
- identical images under different patients (a hash of the decoded pixels): listed in
  ``cohort.duplicates`` and, with ``merge_duplicates=True`` (default), their patients given one split key
  (:mod:`trainables.data.duplicates`);
- samples whose image cells name files none of which can be read: counted per modality in the
  description; they are samples without that modality (missing), never scored as if they had one.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..lookup import check as check_name, unknown as unknown_name
from .adapter import Param, as_text, hint, need_root, resolve_options
from .cohort import Cohort, CohortError, Target
from . import duplicates as same_image
from .images import ImageReadError, frame_count, order_series
from .quarantine import unreadable

__all__ = ["NAME", "OPTIONS", "load", "load_config", "MAX_PROBLEMS", "SEPARATORS"]

log = logging.getLogger(__name__)

MAX_PROBLEMS = 50
SEPARATORS = ("|", ";", ",")  # what a multi-label cell is split on, for the undeclared-column warning
NAME = "manifest"
OPTIONS = {
    "targets": Param((dict, str, list, tuple), None, nullable=True,
                     doc="{column: classes in index order, or None for the sorted distinct values}; a column name or "
                         'a list of names is short for {name: None}; e.g. {"diagnosis": null} or diagnosis '
                         "(targets or multilabel is required)"),
    "multilabel": Param(dict, None, nullable=True,
                        doc='{column: {"sep": separator, "none": the no-label value (optional)}}: one binary '
                            'target per label; e.g. {"Finding Labels": {"sep": "|", "none": "No Finding"}}'),
    "sample_col": Param(str, "sample_id", doc="the sample key column (one row per sample); e.g. study_id"),
    "patient_col": Param(str, "patient_id", doc="the patient key column (the grouping key of every split); e.g. patientid"),
    "image_cols": Param(dict, None, nullable=True,
                        doc='{image column: modality}; a cell is a file, a folder of slices, or paths joined by ";"; '
                            'e.g. {"filename": "xray"}'),
    "tabular": Param((list, tuple), (), doc='tabular feature columns; e.g. ["age", "sex"]'),
    "text": Param((list, tuple), (), doc='free-text columns (scored by the leakage guard too); e.g. ["clinical_notes"]'),
    "image_root": Param((str, os.PathLike), None, nullable=True,
                        doc="the folder relative image paths are resolved against (default: the manifest's folder); "
                            "e.g. /data/images"),
    "masked_targets": Param((list, tuple), (), doc="targets whose blanks mean 'not labelled'; e.g. [\"grade\"]"),
    "name": Param(str, None, nullable=True, doc="the cohort's name (default: the manifest's file stem); e.g. my_hospital"),
    "categorical": Param((list, tuple), (), doc='tabular columns kept as categories even when mostly numbers; e.g. ["site"]'),
    "frames": Param(str, "all", choices=("all", "first"),
                    doc="multi-frame files: every frame an instance, or frame 0 only (the rest counted); e.g. first"),
    "leakage": Param(bool, True, doc="score each tabular and text column alone against the targets and leave out "
                                     "the ones that leak; e.g. false"),
    "threshold": Param(float, 0.95, low=0.5, high=1.0,
                       doc="a tabular column alone at this AUC / balanced accuracy is flagged; e.g. 0.9"),
    "text_threshold": Param(float, 0.85, low=0.5, high=1.0, doc="a text column alone at this AUC is flagged; e.g. 0.8"),
    "allow_leaky": Param((list, tuple), (), doc='flagged columns to keep in the features anyway; e.g. ["notes"]'),
    "merge_duplicates": Param(bool, True,
                              doc="identical images under different patients: give those patients one split key; "
                                  "e.g. false to only report them"),
}


def load(root: str | Path | None = None, *, strict: bool = False, **options) -> Cohort:
    """Read the manifest at ``root`` (``.csv`` or ``.parquet``) into a validated cohort.

    ``options`` (``OPTIONS``): ``targets``: ``{column: classes}``, classes in index order, or None to use the
    sorted distinct values. ``image_cols``: ``{column: modality}``. ``masked_targets``: targets whose blanks
    mean "not labelled". ``name``: the cohort's name (default: the manifest's file stem).
    """
    o = resolve_options(NAME, OPTIONS, options)
    targets = o["targets"] or {}
    targets = {targets: None} if isinstance(targets, str) else dict(targets) if isinstance(targets, Mapping) else \
        {str(t): None for t in targets}
    multilabel = dict(o["multilabel"] or {})
    sample_col, patient_col, tabular, text = o["sample_col"], o["patient_col"], list(o["tabular"]), list(o["text"])
    image_root, masked_targets, name = o["image_root"], o["masked_targets"], o["name"]
    if not targets and not multilabel:
        raise CohortError(f"manifest option 'targets' (at --option / cohort_options) is required (or 'multilabel'): "
                          f"{OPTIONS['targets'].describe('targets')}")
    path = need_root(NAME, root, "the manifest .csv or .parquet file")
    image_cols = dict(o["image_cols"] or {})
    df, where = _read_table(path)
    root = Path(image_root) if image_root is not None else path.parent
    problems: list[str] = []
    notes: list[str] = []  # said in the description

    wanted = {sample_col, patient_col, *targets, *multilabel, *image_cols, *tabular, *text}
    missing_cols = sorted(c for c in wanted if c not in df.columns)
    problems += [f"column {c!r} not found{hint(c, map(str, df.columns))}" for c in missing_cols]
    problems += [f"masked target {t!r} is not one of the targets {[*targets, *multilabel]}" for t in masked_targets
                 if t not in targets and t not in multilabel]
    problems += [f"column {c!r} is declared both in targets and in multilabel" for c in multilabel if c in targets]
    problems += [f"categorical column {c!r} is not one of the tabular columns {tabular}" for c in o["categorical"]
                 if c not in tabular]
    present = wanted - set(missing_cols)

    keys = {}
    for col in (sample_col, patient_col):
        if col in present:
            keys[col] = as_text(df[col])
            problems += [f"{where(i)}, column {col!r}: blank" for i in np.flatnonzero(keys[col].isna())]
    if sample_col in keys:
        ids = keys[sample_col]
        dup = ids[ids.duplicated(keep=False) & ids.notna()]
        for sid, rows in dup.groupby(dup, sort=False).groups.items():
            problems.append(f"{sample_col} {sid!r} appears on {' and '.join(where(i) for i in rows)}")

    labels, target_list = {}, []
    for col, classes in targets.items():
        if col not in present:
            continue
        values = as_text(df[col])
        known = tuple(str(c) for c in classes) if classes is not None else tuple(sorted(values.dropna().unique()))
        masked = col in masked_targets
        if not masked:
            problems += [f"{where(i)}, column {col!r}: no label (blank; list {col!r} in masked_targets if a "
                         f"blank means 'not labelled')" for i in np.flatnonzero(values.isna())]
        unknown = values.notna() & ~values.isin(known)
        for i in np.flatnonzero(unknown):
            problems.append(f"{where(i)}, column {col!r}: " + unknown_name("label", values.iloc[i], known, noun="values"))
        labels[col] = values
        target_list.append(Target(col, "binary" if len(known) == 2 else "multiclass", known, masked=masked))
        _warn_if_multilabel(col, values)
    for col, declared in multilabel.items():
        if col in present:
            made, col_problems = _multilabel(col, declared, as_text(df[col]), col in masked_targets, where,
                                             taken=set(map(str, df.columns)) | set(labels))
            problems += col_problems
            for target, values in made:
                labels[target.name] = values
                target_list.append(target)

    parts, missing_files, missing_rows = [], [], []  # parts: (row, modality, column, files of one path)
    for col, modality in image_cols.items():
        if col not in present:
            continue
        cells = as_text(df[col])
        for i in np.flatnonzero(cells.notna()):
            for part in (p.strip() for p in cells.iloc[i].split(";")):
                full = (root / part).resolve() if part else None
                if full is None or not full.exists():
                    missing_files.append(f"{where(i)}, column {col!r}: file not found: {part!r}")
                    missing_rows.append((i, modality))
                elif full.is_dir():
                    files = sorted(str(f) for f in full.iterdir() if f.is_file() and not f.name.startswith("."))
                    if not files:
                        missing_files.append(f"{where(i)}, column {col!r}: folder has no files: {part!r}")
                    parts.append((i, modality, col, files))
                else:
                    parts.append((i, modality, col, [str(full)]))

    bad = unreadable([f for *_, files in parts for f in files])
    rows = []  # (row, modality, path, frame) in instance order
    n_frames, dropped_frames = {}, 0
    for i, modality, col, files in parts:
        try:
            ordered = [p for p, _ in order_series([f for f in files if f not in bad])]
        except ImageReadError as exc:
            problems.append(f"{where(i)}, column {col!r}: cannot order the slices ({exc})")
            continue
        for p in ordered:
            if p not in n_frames:
                try:
                    n_frames[p] = frame_count(p)
                except ImageReadError:
                    n_frames[p] = 1
            keep = n_frames[p] if o["frames"] == "all" else 1
            dropped_frames += n_frames[p] - keep
            rows += [(i, modality, p, k) for k in range(keep)]
    multi = sum(1 for n in n_frames.values() if n > 1)
    if multi:
        notes.append(f"{multi} multi-frame file(s): " + ("each frame an instance" if o["frames"] == "all" else
                                                        f"frame 0 kept, {dropped_frames} frame(s) left out (frames='first')"))
        if dropped_frames:
            log.warning("manifest %s: frames='first' left out %d frame(s) of %d multi-frame file(s)", path.name,
                        dropped_frames, multi)
    listed = {(i, modality) for i, modality, *_ in parts} | {(i, modality) for i, modality in missing_rows}
    readable = {(i, modality) for i, modality, *_ in rows}
    no_image: dict[str, int] = {}
    for i, modality in sorted(listed - readable, key=lambda t: (t[1], t[0])):
        no_image[modality] = no_image.get(modality, 0) + 1
    if strict:
        problems += missing_files + [f"{where(i)}, column {col!r}: unreadable image {f} ({bad[f]})"
                                     for i, _, col, files in parts for f in files if f in bad]
    if problems:
        shown = problems[:MAX_PROBLEMS]
        more = f"\n  ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise CohortError(f"manifest {path}: {len(problems)} problem(s):\n  - " + "\n  - ".join(shown) + more)

    samples = pd.DataFrame({"sample_id": keys[sample_col], "patient_id": keys[patient_col]})
    for target in target_list:
        samples[target.name] = labels[target.name]
    for col in tabular:
        samples[col] = df[col] if col in o["categorical"] else _numeric_or_warn(df[col], col, where, notes)
    for col in text:
        samples[col] = df[col].astype(object).where(df[col].notna(), "").map(str)
    instances = pd.DataFrame([(samples["sample_id"].iloc[i], m, p, k) for i, m, p, k in rows],
                             columns=["sample_id", "modality", "path", "frame"])
    instances.insert(2, "order", instances.groupby(["sample_id", "modality"]).cumcount())

    duplicates = same_image.find(samples, instances)
    if duplicates:
        log.warning("manifest %s: %s", path.name, same_image.describe(duplicates, o["merge_duplicates"]))
        notes.append(same_image.describe(duplicates, o["merge_duplicates"]))
        if o["merge_duplicates"]:
            samples = same_image.merge_patients(samples, duplicates)
    flagged = {}
    if o["leakage"]:
        flagged = _leakage(samples, target_list, tabular, text, o["threshold"], o["text_threshold"])
        unknown = [c for c in o["allow_leaky"] if c not in (*tabular, *text)]
        if unknown:
            raise CohortError(f"manifest {path}: " + unknown_name("column", unknown[0], [*tabular, *text], "allow_leaky"))
        for col, why in flagged.items():
            log.warning("manifest %s: column %r flagged%s: %s", path.name, col,
                        " (kept: allow_leaky)" if col in o["allow_leaky"] else ", left out of the features", why)
    keep = lambda cols: [c for c in cols if c not in flagged or c in o["allow_leaky"]]  # noqa: E731
    description = f"manifest {path.name}: {len(samples)} samples (one per row), {len(instances)} image instances"
    if missing_files:
        description += f", {len(missing_files)} image path(s) missing (missing instances)"
    if no_image:
        description += ", " + ", ".join(f"{n} sample(s) with no readable {m} image (missing modality)"
                                        for m, n in no_image.items())
    if notes:
        description += "; " + "; ".join(notes)
    return Cohort(name=name or path.stem, samples=samples, instances=instances, targets=target_list,
                  modalities=list(dict.fromkeys(image_cols.values())), tabular=keep(tabular), text=keep(text),
                  description=description, flagged=flagged, duplicates=duplicates,
                  duplicates_merged=bool(duplicates) and o["merge_duplicates"],
                  quarantine=[{"path": f, "reason": reason,
                               "samples": sorted({str(keys[sample_col].iloc[i]) for i, _, _, fs in parts if f in fs}),
                               "modality": next(m for _, m, _, fs in parts if f in fs)}
                              for f, reason in bad.items()])


def _multilabel(col: str, declared, values: pd.Series, masked: bool, where, taken: set[str]):
    """``([(Target, values as "0"/"1"/NaN)], problems)`` for a multi-label column declared ``{"sep", "none"}``."""
    problems = []
    if not isinstance(declared, Mapping) or not isinstance(declared.get("sep"), str) or not declared["sep"]:
        return [], [f"multilabel[{col!r}] must be a dict with a non-empty 'sep' string (and optionally 'none'), "
                    f'e.g. {{"sep": "|", "none": "No Finding"}}; got {declared!r}']
    extra = [k for k in declared if k not in ("sep", "none")]
    if extra:
        problems.append(f"multilabel[{col!r}]: unknown key {extra[0]!r}; keys: sep, none")
    sep, none = declared["sep"], declared.get("none")
    sets = {}
    for i in range(len(values)):
        v = values.iloc[i]
        if v is None or v != v:
            if not masked:
                problems.append(f"{where(i)}, column {col!r}: no label (blank; list {col!r} in masked_targets if a "
                                f"blank means 'not labelled')")
            continue
        labels = {p.strip() for p in str(v).split(sep) if p.strip()}
        if none is not None and none in labels:
            if len(labels) > 1:
                problems.append(f"{where(i)}, column {col!r}: {none!r} together with other labels")
            labels.discard(none)
        sets[i] = labels
    made = []
    for label in sorted(set().union(*sets.values()) if sets else ()):
        name = label if label not in taken else f"{col}:{label}"
        column = pd.Series([("1" if label in sets[i] else "0") if i in sets else np.nan for i in range(len(values))],
                           dtype=object)
        made.append((Target(name, "binary", ("0", "1"), masked=masked), column))
    return made, problems


def _warn_if_multilabel(col: str, values: pd.Series) -> None:
    """Warn when an (undeclared) target column looks multi-label: a separator in many rows, many combinations."""
    v = values.dropna().astype(str)
    for sep in SEPARATORS:
        has = v[v.str.contains(re.escape(sep))]
        if len(has) >= max(3, 0.05 * len(v)) and has.nunique() >= 3:
            log.warning("target column %r looks multi-label: %d of %d rows hold %r-separated values (%d distinct "
                        "combinations, %d classes in all), e.g. %r. If each row can have several labels, declare "
                        "multilabel={%r: {'sep': %r, 'none': <the no-label value>}}", col, len(has), len(v), sep,
                        has.nunique(), v.nunique(), has.iloc[0], col, sep)
            return


def _numeric_or_warn(values: pd.Series, col: str, where, notes: list[str]) -> pd.Series:
    """A tabular column as numbers when most of its cells are numbers: the others (``45 y``) become missing
    and a warning names their lines and values. A column with more than 20% non-numbers stays categorical."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values
    text = values.astype(object).where(values.notna()).map(lambda x: str(x).strip(), na_action="ignore")
    text = text.where(text != "")
    numbers = pd.to_numeric(text, errors="coerce")
    given = text.notna()
    stray = given & numbers.isna()
    if not given.any() or not stray.any() or stray.sum() > 0.2 * given.sum():
        return values  # numbers throughout (handled above), or a categorical column
    shown = ", ".join(f"{where(i)} ({text.iloc[i]!r})" for i in np.flatnonzero(stray)[:10])
    more = f" and {int(stray.sum()) - 10} more" if stray.sum() > 10 else ""
    msg = (f"tabular column {col!r} read as numeric: {int(stray.sum())} of {int(given.sum())} value(s) are not "
           f"numbers and were set to missing: {shown}{more} (list {col!r} in 'categorical' to keep it as categories)")
    log.warning("manifest: %s", msg)
    notes.append(msg)
    return numbers.astype(float)


def _leakage(samples: pd.DataFrame, targets: list[Target], tabular: list[str], text: list[str], threshold: float,
             text_threshold: float) -> dict[str, str]:
    """``{column: reason}`` for each tabular or text column that alone predicts some target."""
    if not tabular and not text:
        return {}
    from .leakage import scan, scan_text  # scikit-learn, imported when a cohort is loaded

    flagged: dict[str, str] = {}
    groups = samples["patient_id"].to_numpy()
    for t in targets:
        lookup = {c: k for k, c in enumerate(t.classes)}
        y = samples[t.name].map(lookup).fillna(-1).to_numpy(dtype=np.int64)
        found = {}
        if tabular:
            found.update(scan(samples[tabular], y, groups, threshold=threshold, target=t.name))
        if text:
            found.update(scan_text(samples[text], y, groups, threshold=text_threshold, target=t.name,
                                   class_names=list(t.classes)))
        for col, why in found.items():
            flagged.setdefault(col, why)
    return flagged


def load_config(config: Mapping) -> Cohort:
    """:func:`load` from a plain dict: ``{"path": ..., "targets": {...}, ...}`` with :func:`load`'s keywords."""
    for key in config:
        check_name("manifest config key", key, ["path", *OPTIONS, "strict"], error=CohortError)
    if "path" not in config:
        raise CohortError("manifest config: 'path' is required")
    if "targets" not in config and "multilabel" not in config:
        raise CohortError("manifest config: 'targets' (or 'multilabel') is required")
    config = dict(config)
    return load(config.pop("path"), **config)


def _read_table(path: Path):
    """The manifest as a DataFrame and a function naming row ``i`` (0-based) as the user sees it."""
    if not path.is_file():
        raise CohortError(f"manifest {path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path), lambda i: f"row {i + 1}"
        if suffix in (".csv", ".tsv", ".txt"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ","), lambda i: f"line {i + 2}"
    except Exception as exc:  # parser errors of any kind
        raise CohortError(f"manifest {path}: cannot be read as {suffix[1:]} ({exc})") from None
    raise CohortError(f"manifest {path}: unsupported type {suffix!r}; use .csv, .tsv or .parquet")
