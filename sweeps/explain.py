"""Explanations of one prediction: attention over slices, and Grad-CAM where the path is differentiable.

Attention: the learned pooling's weight of each slice (``Model.predict``'s ``attention``); a mean
pooling spreads it evenly and says nothing about where the model looked.

Grad-CAM (Selvaraju et al., ICCV 2017; the ``grad-cam`` package): the score of the predicted class is
followed back to the encoder's last convolutional block through a path that is differentiable end to
end: encoder -> the standardiser/PCA fitted on the development part (linear) -> the attention pooling
-> the concatenation fusion -> the head. The head is differentiable for ``logreg`` (its linear logits
on the standardised features) and ``mlp``; a tree head (``lightgbm``, ``xgboost``), ``svc`` (Platt
scaling of a kernel machine) and the ensemble heads are not, and the answer says so instead of
drawing a map. Encoders without a convolutional block (``vit_tiny``) get no map either.

``lesion_scores`` measures the explanations against a known truth: on the synthetic cohort the
lesion's slices and position are known (``trainables.data.synthetic.lesion_truth``): how often the
most attended ``sagittal_t2`` slice is a lesion slice (chance: the lesion's share of the slices), and
what share of the Grad-CAM mass on the lesion's central slice falls inside the lesion (a disk of two
sigmas; chance: its share of the image area).
"""

from __future__ import annotations

import numpy as np
import torch

DIFFERENTIABLE_HEADS = ("logreg", "mlp")


def gradcam_reason(model) -> str | None:
    """Why Grad-CAM is not available for ``model`` (None when it is)."""
    from trainables.registry import split_spec

    head = split_spec(model.meta["head"])[0]
    if head not in DIFFERENTIABLE_HEADS:
        return (f"head {head!r} is not differentiable (a tree, kernel or ensemble head): the path from pixels to "
                "the score is broken there, so no Grad-CAM map is drawn; the attention weights still explain which "
                "slices mattered")
    if not model.encoder or not model.modalities:
        return "the model has no image encoder"
    if split_spec(model.meta["fusion"])[0] != "concat":
        return f"fusion {model.meta['fusion']!r} is not supported by Grad-CAM here"
    if model.encoder["name"].startswith("vit"):
        return "a vision transformer has no convolutional block for Grad-CAM"
    return None


def _target_layer(name: str, net: torch.nn.Module):
    """The last convolutional block: layer3 of a ResNet (layer4 is 2x2 at the 64-pixel input size, too
    coarse to locate anything), the head convolution of an EfficientNet."""
    if hasattr(net, "layer3"):
        return net.layer3[-1]
    if hasattr(net, "conv_head"):
        return net.conv_head
    raise ValueError(f"no convolutional block known for encoder {name!r}")


def _head_logits(head, x: torch.Tensor) -> torch.Tensor:
    """The head's logits as a torch function of the fused features ``x`` (1, d) (before softmax)."""
    from trainables.heads import Scaled, TorchMLPClassifier

    if isinstance(head, Scaled):
        mean = torch.as_tensor(head.scaler_.mean_, dtype=x.dtype)
        scale = torch.as_tensor(head.scaler_.scale_, dtype=x.dtype)
        x, head = (x - mean) / scale, head.estimator_
    if isinstance(head, TorchMLPClassifier):
        return head.model_(x)
    coef = torch.as_tensor(head.coef_, dtype=x.dtype)
    out = x @ coef.T + torch.as_tensor(head.intercept_, dtype=x.dtype)
    return torch.cat([-out, out], 1) / 2 if out.shape[1] == 1 else out  # binary: softmax of +-z/2 = sigmoid(z)


class _StudyScore(torch.nn.Module):
    """Slices of one modality (N, 3, S, S) -> the head's logits (1, C), the rest of the study fixed."""

    def __init__(self, model, net, modality: str, fused: np.ndarray, offset: int):
        super().__init__()
        self.model, self.net, self.modality = model, net, modality
        self.fused = torch.as_tensor(fused, dtype=torch.float32)  # (1, d): the study's fused features
        self.offset = offset

    def forward(self, x):
        feats = self.net(x)  # (N, D)
        z = self.model.standardisers[self.modality].torch_apply(feats)[None]  # (1, N, k)
        mask = torch.ones(z.shape[:2], dtype=torch.bool)
        pooled = self.model.poolers[self.modality](z, mask)  # (1, k)
        k = pooled.shape[1]
        fused = torch.cat([self.fused[:, :self.offset], pooled, self.fused[:, self.offset + k:]], 1)
        return _head_logits(self.model.head, fused)


def gradcam(model, modality: str, images: list[np.ndarray], bags: dict, tabular=None) -> dict:
    """Grad-CAM maps of the slices ``images`` (raw 2-D arrays, in slice order) of ``modality`` for the
    predicted class, with the study's other modalities and columns as given in ``bags`` (raw
    embeddings) / ``tabular``. Returns {"available": False, "reason"} or {"available": True,
    "class", "maps": (N, H, W) in [0, 1] at the encoder's input size, "fused_check": max abs
    difference between the torch path's logits and the head's own (a self-check)}."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from trainables.encoders import Preprocessor, create_encoder

    from .model import encoder_weights

    reason = gradcam_reason(model)
    if reason:
        return {"available": False, "reason": reason}
    enc = model.encoder
    net, _ = create_encoder(enc["name"], enc["input_size"], encoder_weights(model))
    net.requires_grad_(True)  # gradients flow to the activations (no parameter is changed)
    pre = Preprocessor(enc["preprocessing"], enc["input_size"])
    x = pre.batch(pre.slices(images)).contiguous()  # (N, 3, S, S)
    with torch.no_grad():
        emb = net(x).numpy()
    study = {**bags, modality: (emb[None], np.ones((1, len(images)), bool))}
    std = {m: (model.standardisers[m].apply(*study[m]), study[m][1]) for m in model.modalities if m in study}
    for m in model.modalities:
        if m not in std:
            d = model.standardisers[m].out_dim
            std[m] = (np.zeros((1, 1, d), np.float32), np.zeros((1, 1), bool))
    tab = model.tabular.transform(tabular[model.tabular_columns].reset_index(drop=True)) if model.tabular is not None else None
    fused = model.fused_features(std, tab)
    offset = sum(model.standardisers[m].out_dim for m in model.modalities[:model.modalities.index(modality)])
    scorer = _StudyScore(model, net, modality, fused, offset).eval()
    with torch.no_grad():
        logits = scorer(x)
    proba_head = model.head.predict_proba(fused)
    cls_idx = int(np.argmax(proba_head[0]))
    check = float(np.abs(torch.softmax(logits, 1).numpy() - proba_head).max())
    with GradCAM(model=scorer, target_layers=[_target_layer(enc["name"], net)]) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(cls_idx)])  # (N, S, S)
    classes = [model.class_names[int(c)] for c in np.asarray(model.head.classes_)]
    return {"available": True, "class": classes[cls_idx], "maps": maps, "check": check}


def overlay_png(image: np.ndarray, cam: np.ndarray, path) -> str:
    """A PNG of the slice (grey) with the map over it (jet, 40%)."""
    from PIL import Image
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from trainables.encoders import grayscale_norm

    g = grayscale_norm(np.asarray(image, np.float32))
    if cam.shape != g.shape:
        cam = np.asarray(Image.fromarray(cam.astype(np.float32)).resize(g.shape[::-1], Image.BILINEAR))
    rgb = np.repeat(g[..., None], 3, 2).astype(np.float32)
    img = Image.fromarray(show_cam_on_image(rgb, cam, use_rgb=True, image_weight=0.6))
    img.resize((img.width * 4, img.height * 4), Image.NEAREST).save(path)  # 4x: small slices stay visible
    return str(path)


def gradcam_for_paths(model, paths: dict[str, list[str]], out: dict, bags: dict | None = None, tabular=None,
                      top: int = 2) -> dict:
    """The serve answer's Grad-CAM part: the ``top`` most attended slices of each uploaded modality,
    their maps summarised as the hottest point (row, column, fraction of the image size) and the
    map's mass in the hottest quarter; or why there is no map."""
    from trainables.data.images import read_slice

    reason = gradcam_reason(model)
    if reason:
        return {"available": False, "reason": reason}
    result = {"available": True, "method": "Grad-CAM on the encoder's last convolutional block", "slices": {}}
    for m, ps in paths.items():
        ws = [w["weight"] for w in out["attention"].get(m, [])]
        if not ws:
            continue
        r = gradcam(model, m, [read_slice(p) for p in ps], bags or {}, tabular)
        if not r["available"]:
            return r
        result["check"] = max(result.get("check", 0.0), r["check"])  # torch path vs the head: ~0
        order = np.argsort(ws)[::-1][:top]
        items = []
        for i in order:
            cam = r["maps"][i]
            yx = np.unravel_index(int(cam.argmax()), cam.shape)
            items.append({"slice": int(i) + 1, "file": out["attention"][m][i]["file"], "weight": ws[i],
                          "hottest": {"row": round(yx[0] / cam.shape[0], 3), "col": round(yx[1] / cam.shape[1], 3)}})
        result["slices"][m] = items
    return result


def lesion_scores(model, cohort_root, seed: int, n_patients: int, modality: str = "sagittal_t2",
                  limit: int | None = None, overlays=None, only: set | None = None, size: int = 64,
                  compression: str = "none") -> dict:
    """Attention and Grad-CAM against the synthetic cohort's planted lesion (see the module docstring).
    ``cohort_root``: a synthetic cohort generated with ``seed``, ``n_patients``, ``size`` and
    ``compression`` (the lesion's position and radius are in pixels of ``size``; the cohort is loaded
    with all four, so it is the one a run embedded, and its cache entry is reused). A slice whose size
    is not ``size`` raises ``ValueError`` naming the file."""
    import pandas as pd

    from trainables.data.images import order_series, read_slice
    from trainables.data.synthetic import lesion_truth
    from trainables.embed import embed_cohort
    from trainables.pipeline import build_bags

    from .model import encoder_weights, load_cohort, predict_cohort

    truth = lesion_truth(seed=seed, n_patients=n_patients, size=size)
    lesions = truth[truth["width"] > 0]
    if only is not None:  # e.g. the held-out test part's studies
        lesions = lesions[lesions["study_id"].isin(only)]
    lesions = lesions.reset_index(drop=True)
    cohort = load_cohort(model, str(cohort_root), "synthetic",
                         {"seed": seed, "n_patients": n_patients, "size": size, "compression": compression})
    first = str(cohort.instances["path"].iat[0])
    shape = read_slice(first).shape
    if shape != (size, size):  # the generator draws other studies and pixels at another size: the truth would not fit
        raise ValueError(f"{first}: a {shape[1]}x{shape[0]} slice, but the lesion truth is for {size}x{size} "
                         "slices (give the cohort's size)")
    preds = predict_cohort(model, cohort).set_index("sample_id")
    import json

    enc = model.encoder
    entry = embed_cohort(cohort, enc["name"], enc["preprocessing"], weights=encoder_weights(model),
                         input_size=enc["input_size"], progress=False)  # a cache hit: predict embedded it
    ids = cohort.samples["sample_id"].tolist()
    all_bags = build_bags(entry.embeddings, entry.index, ids, model.modalities)

    hits, chance, cam_in, cam_chance, n_cam = [], [], [], [], 0
    reason = gradcam_reason(model)
    for k, r in enumerate(lesions.itertuples()):
        att = json.loads(preds.loc[r.study_id, "attention"]).get(modality)
        if not att or len(att) != r.n_slices:
            continue
        hits.append(r.first <= int(np.argmax(att)) < r.first + r.width)
        chance.append(r.width / r.n_slices)
        if reason or (limit is not None and n_cam >= limit):
            continue
        folder = pd.Series(list((cohort.instances[(cohort.instances["sample_id"] == r.study_id)
                                                  & (cohort.instances["modality"] == modality)]["path"])))
        paths = [p for p, _ in order_series(folder.tolist())]
        imgs = [read_slice(p) for p in paths]
        i = ids.index(r.study_id)
        others = {m: (X[i:i + 1], mask[i:i + 1]) for m, (X, mask) in all_bags.items() if m != modality}
        g = gradcam(model, modality, imgs, others, cohort.samples.iloc[[i]] if model.tabular_columns else None)
        centre = r.first + r.width // 2
        cam = g["maps"][centre]
        H, W = imgs[centre].shape
        yy, xx = np.mgrid[0:H, 0:W]
        disk = (yy - r.cy) ** 2 + (xx - r.cx) ** 2 <= (2 * r.radius) ** 2
        if cam.shape != (H, W):
            from PIL import Image

            cam = np.asarray(Image.fromarray(cam.astype(np.float32)).resize((W, H), Image.BILINEAR))
        cam_in.append(float(cam[disk].sum() / max(cam.sum(), 1e-12)))
        cam_chance.append(float(disk.mean()))
        if overlays is not None and n_cam < 4:
            overlay_png(imgs[centre], cam, overlays / f"gradcam_{k:02d}.png")
        n_cam += 1
    out = {"modality": modality, "lesion_studies": len(hits),
           "attention_top_slice_hit_rate": float(np.mean(hits)) if hits else float("nan"),
           "attention_chance": float(np.mean(chance)) if chance else float("nan")}
    if not getattr(model.poolers.get(modality), "learnable", False):  # uniform weights: no slice is preferred
        out["attention"] = f"pooling {model.meta['pooling']['name']!r} weighs every slice alike: no slice is preferred"
        out["attention_top_slice_hit_rate"] = float("nan")
    if reason:
        out["gradcam"] = reason
    else:
        out.update({"gradcam_studies": n_cam, "gradcam_mass_in_lesion": float(np.mean(cam_in)) if cam_in else float("nan"),
                    "gradcam_chance": float(np.mean(cam_chance)) if cam_chance else float("nan")})
    return out
