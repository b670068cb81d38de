"""Packaged pretrained weights: found offline, loaded, and checked by the space before a sweep."""

import pytest
import torch

from sweeps.spec import SpecError, SweepSpec
from trainables.encoders import create_encoder, resolve_weights


def test_packaged_efficientnet_weights_load_and_differ_from_random_init():
    path = resolve_weights("efficientnet_lite0", "packaged")
    pretrained, _ = create_encoder("efficientnet_lite0", 64, path)
    random, _ = create_encoder("efficientnet_lite0", 64)
    a, b = pretrained.state_dict(), random.state_dict()
    changed = [k for k in a if a[k].dtype.is_floating_point and not torch.equal(a[k], b[k])]
    assert len(changed) > 200  # the ImageNet tensors, not the seeded init


def test_space_rejects_weights_it_cannot_resolve():
    space = {"encoder": "resnet18", "pooling": "mean", "head": "logreg"}
    with pytest.raises(SpecError, match="no packaged weights"):
        SweepSpec(name="t", space=space, weights={"resnet18": "packaged"}).validate()
    with pytest.raises(SpecError, match="resnet18"):
        SweepSpec(name="t", space=space, weights={"resnet81": "/x.pt"}).validate()
    assert resolve_weights("resnet18", None) is None and resolve_weights("resnet18", "random") is None
    with pytest.raises(SpecError, match="weights file not found"):  # a missing file fails at the check, not in the embed stage
        SweepSpec(name="t", space=space, weights={"resnet18": "/no/such/w.pt"}).validate()
