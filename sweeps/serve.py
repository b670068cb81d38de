"""``python -m sweeps serve RUN [--host 127.0.0.1] [--port 8000]``: a run's model as an HTTP app on Ray Serve.

Routes (FastAPI behind a Serve ingress; the OpenAPI page is ``/docs``):

- ``GET /``: a small upload page (one file input per modality, one text input per tabular column);
- ``POST /predict``: one study as ``multipart/form-data``: one file field per modality name, repeated
  for each slice (``-F sagittal_t2=@a.dcm -F sagittal_t2=@b.dcm ...``), tabular columns as plain
  fields by column name (an empty value is a missing value, imputed as in training; fields the model
  does not use are listed in ``ignored_fields``). Answers JSON:
  ``probabilities`` (class -> p), ``predicted``, ``modalities`` present, ``attention`` (modality -> the
  weight of each slice, in slice order, with the uploaded file names) and ``explanation``.
- ``GET /health``: ``{"status": "ok"}``.

Bad uploads get a 4xx naming the problem, never a 500: a file field that is not a modality (400), a missing tabular
field (422), a file that is not a readable image or a corrupt DICOM (422, naming the uploaded file
name), no image at all while the model expects one (422), too many or too large files (413). A
modality left out of a request is handled the way the model was trained to (absent, zero-filled with
a presence indicator). Listens on 127.0.0.1 unless ``--host`` says otherwise. Nothing from a DICOM
header is returned or logged: the answer holds numbers, class names and the uploaded file names.
"""


import argparse
import html
import re
import tempfile
from pathlib import Path

import numpy as np

MAX_FILE_BYTES = 64 << 20
MAX_FILES = 512


class UploadError(ValueError):
    """A request the model cannot answer; ``status`` is its HTTP status (4xx)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _safe_name(name: str | None, k: int) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name or f"file{k}").name)[:80]
    return base or f"file{k}"


def predict_upload(model, files: dict[str, list[tuple[str, bytes]]], fields: dict[str, str], *,
                   explain: bool = True) -> dict:
    """Answer one study: ``files`` {modality: [(file name, bytes), ...]}, ``fields`` {column: text}.
    Raises ``UploadError`` for a bad request."""
    import pandas as pd

    from trainables.data.images import ImageReadError, order_series
    from trainables.embed import run_encoder

    from .model import ModelError
    from .model import encoder_weights

    unknown = [k for k in files if k not in model.modalities]
    if unknown:
        raise UploadError(400, f"unknown file field(s) {', '.join(map(repr, unknown))}; this model takes files for "
                               f"{', '.join(model.modalities) or 'no modality'} and fields "
                               f"{', '.join(model.tabular_columns) or 'none'}")
    missing = [c for c in model.tabular_columns if c not in fields]
    if missing:
        raise UploadError(422, f"missing field(s) {', '.join(missing)} (send an empty value for an unknown one)")
    if model.modalities and not any(files.get(m) for m in model.modalities):
        raise UploadError(422, f"no image uploaded; send slices as file fields named {', '.join(model.modalities)}")
    n_files = sum(len(v) for v in files.values())
    if n_files > MAX_FILES:
        raise UploadError(413, f"{n_files} files; at most {MAX_FILES} per study")
    tab = None
    if model.tabular_columns:
        numeric = set(model.tabular.fitted_[1]) if model.tabular is not None else set()
        row = {}
        for c in model.tabular_columns:
            v = (fields.get(c) or "").strip()
            if c in numeric:
                try:
                    row[c] = float(v) if v else np.nan
                except ValueError:
                    raise UploadError(422, f"field {c!r}: {v[:40]!r} is not a number") from None
            else:
                row[c] = v if v else np.nan
        tab = pd.DataFrame([row])
    bags, names = {}, {}
    with tempfile.TemporaryDirectory(prefix="sweeps-serve-") as tmp:
        for m in model.modalities:
            ups = files.get(m) or []
            if not ups:
                continue
            folder = Path(tmp) / m
            folder.mkdir()
            shown = {}
            for k, (name, data) in enumerate(ups):
                if len(data) > MAX_FILE_BYTES:
                    raise UploadError(413, f"{m} file {_safe_name(name, k)!r}: larger than {MAX_FILE_BYTES >> 20} MB")
                if not data:
                    raise UploadError(422, f"{m} file {_safe_name(name, k)!r} is empty")
                path = folder / f"{k:04d}_{_safe_name(name, k)}"
                path.write_bytes(data)
                shown[str(path)] = _safe_name(name, k)
            try:
                ordered = [p for p, _ in order_series(list(shown))]
                inst = pd.DataFrame({"sample_id": "upload", "modality": m, "order": range(len(ordered)), "path": ordered,
                                     "frame": 0})
                enc = model.encoder
                emb = run_encoder(inst, enc["name"], enc["preprocessing"], weights=encoder_weights(model),
                                  input_size=enc["input_size"], progress=False)
            except ImageReadError as exc:
                raise UploadError(422, f"{m} file {shown.get(exc.path, '?')!r} is not a readable image: {exc.reason}") from None
            bags[m] = (emb[None], np.ones((1, len(ordered)), bool))  # (1, N, D), (1, N)
            names[m] = [shown[p] for p in ordered]
            if explain:
                names[f"__paths__{m}"] = ordered
        try:
            pred = model.predict(bags, tab, n=1)
        except ModelError as exc:
            raise UploadError(422, str(exc)) from None
        out = {
            "probabilities": {c: float(p) for c, p in zip(model.class_names, pred.proba[0])},
            "predicted": model.class_names[int(pred.proba[0].argmax())],
            "modalities": [m for m in model.modalities if pred.presence[m][0]],
            "ignored_fields": sorted(k for k in fields if k not in model.tabular_columns),  # columns the model does not use
            "attention": {m: [{"file": f, "weight": round(float(w), 5)} for f, w in
                              zip(names[m], a[0][np.isfinite(a[0])])] for m, a in pred.attention.items() if m in names},
        }
        out["explanation"] = _explanation(model, out, {m: names[f"__paths__{m}"] for m in bags} if explain else {},
                                          bags, tab)
    return out


def _explanation(model, out: dict, paths: dict[str, list[str]], bags: dict, tab) -> dict:
    """Words, and Grad-CAM where the path is differentiable (``sweeps.explain``)."""
    text = [f"predicted {out['predicted']} (p = {out['probabilities'][out['predicted']]:.2f})"]
    for m, ws in out["attention"].items():
        if ws:
            top = max(range(len(ws)), key=lambda i: ws[i]["weight"])
            uniform = 1 / len(ws)
            text.append(f"{m}: the most attended slice is #{top + 1} of {len(ws)} ({ws[top]['file']}), weight "
                        f"{ws[top]['weight']:.3f} (uniform would be {uniform:.3f})")
    missing = [m for m in model.modalities if m not in out["modalities"]]
    if missing:
        text.append(f"absent: {', '.join(missing)} (handled as in training: zero-filled with a presence indicator)")
    result = {"summary": "; ".join(text)}
    try:
        from .explain import gradcam_for_paths

        result["gradcam"] = gradcam_for_paths(model, paths, out, bags, tab) if paths else {
            "available": False, "reason": "not asked for"}
    except ImportError:
        result["gradcam"] = {"available": False, "reason": "Grad-CAM needs the grad-cam package"}
    return result


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sweeps model: {title}</title>
<style>body{{font-family:sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}}
fieldset{{margin:1rem 0;border:1px solid #bbb;border-radius:6px}} label{{display:block;margin:.4rem 0}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.2rem .5rem}} .bar{{background:#4a7;height:.8rem}}
#out{{margin-top:1rem}} .muted{{color:#666;font-size:.9rem}}</style></head>
<body><h1>{title}</h1>
<p class="muted">Predicts <b>{target}</b> ({classes}) for one study. Research use only, not a medical device.
Upload each series' slices (DICOM or images; order is recovered from the headers). API: <a href="/docs">/docs</a>.</p>
<form id="f"><fieldset><legend>Series</legend>{file_inputs}</fieldset>
<fieldset><legend>Clinical fields</legend>{field_inputs}</fieldset>
<button type="submit">Predict</button></form><div id="out"></div>
<script>
document.getElementById('f').onsubmit = async (e) => {{
  e.preventDefault(); const out = document.getElementById('out'); out.textContent = 'Predicting...';
  const r = await fetch('/predict', {{method: 'POST', body: new FormData(e.target)}});
  const j = await r.json();
  if (!r.ok) {{ out.innerHTML = '<p style="color:#b00"></p>';
    out.firstChild.textContent = 'Error ' + r.status + ': ' + (typeof j.detail === 'string' ? j.detail : JSON.stringify(j.detail)); return; }}
  let h = '<h2>Prediction: ' + j.predicted + '</h2><table><tr><th>class</th><th>probability</th><th></th></tr>';
  for (const [c, p] of Object.entries(j.probabilities))
    h += '<tr><td>' + c + '</td><td>' + p.toFixed(3) + '</td><td><div class="bar" style="width:' + (p * 200) + 'px"></div></td></tr>';
  h += '</table><p id="summary"></p>';
  out.innerHTML = h;
  document.getElementById('summary').textContent = j.explanation.summary;  // holds uploaded file names: text, not HTML
}};
</script></body></html>"""


def page(model) -> str:
    """The upload page (HTML)."""
    files = "".join(f'<label>{html.escape(m)}: <input type="file" name="{html.escape(m)}" multiple></label>'
                    for m in model.modalities) or "<p>(this model takes no images)</p>"
    fields = "".join(f'<label>{html.escape(c)}: <input type="text" name="{html.escape(c)}"></label>'
                     for c in model.tabular_columns) or "<p>(none)</p>"
    return PAGE.format(title=html.escape(f"{model.meta.get('run', 'model')} ({model.meta.get('arm') or ''})"),
                       target=html.escape(str(model.meta.get("target"))),
                       classes=html.escape(", ".join(model.class_names)), file_inputs=files, field_inputs=fields)


def build_app(model_dir: str):
    """The Serve application (a FastAPI ingress deployment) for the model at ``model_dir``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from ray import serve

    app = FastAPI(title="sweeps model", description="Predictions of a sweep's chosen model for one study at a time.")

    @serve.deployment(max_ongoing_requests=4)
    @serve.ingress(app)
    class ModelServer:
        def __init__(self, path: str):
            from .model import load_model

            self.model = load_model(path)

        @app.get("/", response_class=HTMLResponse)
        def index(self) -> str:
            return page(self.model)

        @app.get("/health")
        def health(self) -> dict:
            return {"status": "ok"}

        @app.post("/predict")
        async def predict(self, request: Request):
            if not request.headers.get("content-type", "").startswith("multipart/form-data"):
                return JSONResponse({"detail": "send the study as multipart/form-data"}, status_code=415)
            try:
                form = await request.form(max_files=MAX_FILES + 1, max_fields=1000)
            except Exception as exc:  # a malformed body: the client's fault
                return JSONResponse({"detail": f"cannot read the form: {type(exc).__name__}"}, status_code=400)
            files, fields = {}, {}
            for key, value in form.multi_items():
                if hasattr(value, "read"):
                    files.setdefault(key, []).append((value.filename, await value.read()))
                else:
                    fields[key] = str(value)
            try:
                return predict_upload(self.model, files, fields)
            except UploadError as exc:
                return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    return ModelServer.bind(str(model_dir))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run name (its model/ folder) or the path of a model folder")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--storage", help="the folder the run was started with")


def main(a) -> int:
    import os
    import signal
    import threading

    import ray
    from ray import serve

    from .model import load_model
    from .predict import model_dir

    path = model_dir(a.run)
    load_model(path)  # refuse an incompatible model before starting anything
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # a Ray instance of its own ("local"), never a cluster someone left running with `ray start`
    ray.init(address="local", include_dashboard=False, log_to_driver=False, num_cpus=max(2, os.cpu_count() or 2))
    serve.start(http_options={"host": a.host, "port": a.port})
    serve.run(build_app(str(path)), name="sweeps", route_prefix="/", blocking=False)
    print(f"serving {path} on http://{a.host}:{a.port}/ (OpenAPI: /docs); Ctrl-C stops", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs its own handlers
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1):
            pass
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0
