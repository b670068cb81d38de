"""Do the explanations point at the lesion? The synthetic cohort plants a lesion in known slices and at
a known position of the sagittal_t2 series (``trainables.data.synthetic.lesion_truth``). Fit one
configuration (attention pooling, logistic head) on a training cohort, then on new patients measure:

- how often the most attended sagittal_t2 slice is a lesion slice, against chance (the lesion's share
  of the slices);
- the share of the Grad-CAM mass on the lesion's central slice inside the lesion (a disk of two
  sigmas), against chance (the disk's share of the image).

Run: python benchmarks/explain_lesion.py [--train-patients 120] [--eval-seed 7] [--eval-patients 40]
     [--encoder efficientnet_lite0 --weights packaged]
Prints RESULT lines; writes a few Grad-CAM overlays with --overlays DIR.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONFIG = {"encoder": "resnet18", "preprocessing": "grayscale_norm", "pca_dim": 16, "fusion": "concat",
          "pooling": {"attention": {"hidden_dim": 32}}, "tabular": False, "sampling": "class_weight", "head": "logreg"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train-patients", type=int, default=120)
    p.add_argument("--eval-seed", type=int, default=7)
    p.add_argument("--eval-patients", type=int, default=40)
    p.add_argument("--gradcam-limit", type=int, default=30, help="lesion studies to draw Grad-CAM for")
    p.add_argument("--overlays", type=Path, help="write a few Grad-CAM overlay PNGs here")
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--weights", help="encoder weights: a local file or 'packaged' (default: seeded random init)")
    a = p.parse_args()

    from sweeps.explain import lesion_scores
    from sweeps.heldout import encoder_info
    from sweeps.model import Model
    from sweeps.runner import prepare
    from sweeps.spec import load_space
    from trainables.data import synthetic
    from trainables.trainable import trial_data

    config = {**CONFIG, "encoder": a.encoder}
    base = load_space("quickstart")
    spec = replace(base, cohort_options={"n_patients": a.train_patients}, test_fraction=0.0,
                   space={**base.space, "encoder": a.encoder}, weights={a.encoder: a.weights} if a.weights else {})
    _, _, handle = prepare(spec, progress=False)
    data = trial_data(handle, a.encoder, "grayscale_norm")
    model = Model.fit(config, data, arm="attention", seed=0, encoder=encoder_info(spec, config),
                      extra={"adapter": "synthetic", "target": "severity"})
    root = synthetic.ensure(None, seed=a.eval_seed, n_patients=a.eval_patients)
    if a.overlays:
        a.overlays.mkdir(parents=True, exist_ok=True)
    s = lesion_scores(model, root, a.eval_seed, a.eval_patients, limit=a.gradcam_limit, overlays=a.overlays)
    print(f"RESULT encoder {a.encoder} weights {a.weights or 'random-init'} train_patients {a.train_patients}")
    print(f"RESULT lesion_studies {s['lesion_studies']}")
    print(f"RESULT attention_top_slice_hit_rate {s['attention_top_slice_hit_rate']:.3f}")
    print(f"RESULT attention_top_slice_chance {s['attention_chance']:.3f}")
    print(f"RESULT gradcam_studies {s.get('gradcam_studies', 0)}")
    print(f"RESULT gradcam_mass_in_lesion {s.get('gradcam_mass_in_lesion', float('nan')):.3f}")
    print(f"RESULT gradcam_mass_chance {s.get('gradcam_chance', float('nan')):.3f}")


if __name__ == "__main__":
    main()
