"""The "Held-out test" section: the chosen configuration (and each compared arm's best) refitted on
the whole development part and scored once on a test part the sweep never saw, with patient-bootstrap
CIs, per-class recall, the paired comparison of the arms on the same test patients (DeLong's test
for the AUC, a paired bootstrap for macro-F1), calibration (Brier score, expected calibration error,
reliability diagram) and metrics by demographic subgroup with n and CIs."""

from __future__ import annotations

import numpy as np

from ..fmt import LABEL, ci, label, number, signed_ci, table
from ..run import ReportOptions, RunView
from ..stats import SHOWN, brier, delong_test, paired_bootstrap, patient_bootstrap, reliability, score

MIN_SUBGROUP = 5  # fewer samples: the subgroup's row says so instead of a number


def section(view: RunView, options: ReportOptions) -> list[str]:
    h = view.held_out
    if h is None:
        return []
    info, arr = h["info"], h["arrays"]
    y, groups, classes = arr["y"].astype(int), arr["groups"], [str(c) for c in arr["classes"]]
    models = info["models"]
    names = [info["chosen"]] + sorted(a for a in models if a != info["chosen"])
    proba = {a: arr[f"proba__{a}"] for a in names}
    L = ["## Held-out test", ""]
    used = int(info.get("used", 1))
    where = (f"about {info['fraction']:.0%} of the patients, were set aside before the sweep (grouped by patient, "
             f"stratified on the target, seed {info['seed']})" if info.get("source", "fraction") == "fraction" else
             "a separate test cohort, were kept out of the sweep")
    L.append(f"**{info['n_samples']} samples ({info['n_patients']} patients)**, {where}; no trial saw them. "
             f"After the selection, each configuration below was refitted on the "
             f"whole development part ({info['n_dev_samples']} samples, {info['n_dev_patients']} patients) and scored "
             f"on the test part. " + ("**The test part was used once**, for these numbers only."
                                      if used == 1 else f"**Warning: the test part has been scored {used} times** "
                                      "(`finalize --force`); it is no longer an untouched held-out test."))
    L.append("")
    L.append(f"The chosen model is the best configuration by cross-validated {label(info['metric'])} "
             f"(saved in `model/`); the other rows are the best configuration of each compared pooling. 95% CIs "
             "resample test patients.")
    L.append("")
    hdr = ["model", "trial", f"CV {label(info['metric'])}"] + [f"{LABEL[m]} [95% CI]" for m in SHOWN] + ["Brier", "ECE"]
    cells = []
    for a in names:
        cis = patient_bootstrap(y, proba[a], groups)
        tag = f"**{a}** (chosen)" if a == info["chosen"] else a
        cells.append([tag, models[a]["trial"], number(models[a]["cv"])]
                     + [ci(score(m, y, proba[a]), cis[m]) for m in SHOWN]
                     + [number(brier(y, proba[a])), number(reliability(y, proba[a])[1])])
    L += [table(hdr, cells), ""]

    counts = np.bincount(y, minlength=len(classes))
    L.append("Recall per class (n = test samples of the class):")
    L.append("")
    rows = []
    for a in names:
        pred = proba[a].argmax(1)
        rows.append([a] + [number((pred[y == k] == k).mean()) if counts[k] else "n/a" for k in range(len(classes))])
    L += [table(["model"] + [f"{c} (n={counts[k]})" for k, c in enumerate(classes)], rows), ""]

    if len(names) >= 2:
        L.append("Paired comparison on the same test patients: macro-AUC by DeLong's test (one-vs-rest macro "
                 "for more than two classes), macro-F1 by a paired patient bootstrap (95% CI of the difference).")
        L.append("")
        base = names[0]
        rows = []
        for other in names[1:]:
            d = delong_test(y, proba[base], proba[other])
            f1 = paired_bootstrap(y, proba[base], proba[other], groups, "f1_macro")
            rows.append([f"{base} - {other}", f"{d.diff:+.3f}" if np.isfinite(d.diff) else "n/a", number(d.se),
                         number(d.z), number(d.p), signed_ci(*f1)])
        L += [table(["comparison", "macro-AUC difference", "SE (DeLong)", "z", "p", "macro-F1 difference [95% CI]"],
                    rows), ""]

    chosen = proba[info["chosen"]]
    bins, ece = reliability(y, chosen)
    L.append(f"Calibration of the chosen model on the test part: Brier score {number(brier(y, chosen))} "
             f"(0 is perfect; multi-class, summed over classes), expected calibration error {number(ece)} "
             f"({len(bins)} non-empty confidence bins of 10).")
    L.append("")
    if options.plot_dir is not None:
        from ..plots import reliability as plot_reliability

        name = plot_reliability(bins, f"{info['chosen']}: held-out test (n={len(y)})", options.plot_dir,
                                "held_out_reliability.png")
        L += [f"![reliability diagram]({name})", ""]

    L += _explanations(info.get("explanations") or {})
    demo = [k[6:] for k in arr if k.startswith("demo__")]
    if demo:
        L.append(f"By demographic subgroup (the chosen model; 95% CIs resample the subgroup's patients; fewer than "
                 f"{MIN_SUBGROUP} samples: not estimated):")
        L.append("")
        rows = []
        for col in demo:
            lab = arr[f"demo__{col}"].astype(str)
            for g in sorted(set(lab)):
                sel = lab == g
                n, npat = int(sel.sum()), len(np.unique(groups[sel]))
                if n < MIN_SUBGROUP:
                    rows.append([col, g, n, npat] + ["too few"] * len(SHOWN))
                    continue
                cis = patient_bootstrap(y[sel], chosen[sel], groups[sel])
                rows.append([col, g, n, npat] + [ci(score(m, y[sel], chosen[sel]), cis[m]) for m in SHOWN])
        L += [table(["column", "subgroup", "n", "patients"] + [f"{LABEL[m]} [95% CI]" for m in SHOWN], rows), ""]
    return L


def _explanations(ex: dict) -> list[str]:
    """Attention and Grad-CAM against the synthetic cohort's planted lesion (``sweeps.explain``)."""
    if not ex:
        return []
    L = ["Do the explanations find the lesion? On this synthetic cohort the lesion's slices and position are known. "
         "Attention: how often the most attended sagittal_t2 slice of a test study with a lesion is a lesion slice "
         "(chance: the lesion's share of the slices). Grad-CAM: the share of the map's mass on the lesion's central "
         "slice that falls inside the lesion (chance: the lesion's share of the image).", ""]
    rows = []
    for arm, s in ex.items():
        if "error" in s:
            rows.append([arm, "n/a", f"not measured: {s['error']}", ""])
            continue
        cam = (f"{number(s['gradcam_mass_in_lesion'])} vs {number(s['gradcam_chance'])} (n={s['gradcam_studies']})"
               if "gradcam_mass_in_lesion" in s else f"not available: {s.get('gradcam', '')}")
        att = (s["attention"] if "attention" in s else
               f"{number(s['attention_top_slice_hit_rate'])} vs {number(s['attention_chance'])}")
        rows.append([arm, s["lesion_studies"], att, cam])
    L += [table(["model", "test studies with a lesion", "top-attended slice is a lesion slice (vs chance)",
                 "Grad-CAM mass in the lesion (vs chance)"], rows), ""]
    return L
