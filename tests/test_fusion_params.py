"""Every registered fusion declares its parameters (validation as data): exactly the keyword
parameters its constructor takes, with the same defaults, each with a meaning; and the declared
defaults pass their own checks."""

import inspect

import pytest

from trainables.fusion import FUSIONS
from trainables.registry import REQUIRED, Param, ParamValueError


def _keywords(factory) -> dict[str, object]:
    sig = inspect.signature(factory)
    return {n: p.default for n, p in sig.parameters.items()
            if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_fusion_declares_every_constructor_parameter_with_its_default(name):
    declared = FUSIONS.params[name]
    taken = _keywords(FUSIONS[name])
    assert sorted(declared) == sorted(taken), f"fusion {name!r}: declared {sorted(declared)}, constructor takes {sorted(taken)}"
    for key, param in declared.items():
        assert isinstance(param, Param)
        want = REQUIRED if taken[key] is inspect.Parameter.empty else taken[key]
        assert param.default == want and type(param.default) is type(want), f"{name}.{key}: {param.default!r} != {want!r}"
        assert param.doc, f"{name}.{key} has no one-line meaning"
        if param.default is not REQUIRED:
            param.check(param.default, f"fusion.{key}")


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_fusion_constructs_with_its_declared_defaults(name):
    defaults = {k: p.default for k, p in FUSIONS.params[name].items()}
    FUSIONS[name](**defaults)


def test_declared_values_are_checked():
    FUSIONS.check_params("attention", {"missing": "neutral", "modality_dropout": 0.5, "dim": 16})
    with pytest.raises(ParamValueError, match=r"fusion.missing='bogus'.*allowed zero, neutral, mean"):
        FUSIONS.check_params("attention", {"missing": "bogus"})
    with pytest.raises(ParamValueError, match="modality_dropout"):
        FUSIONS.check_params("gated", {"modality_dropout": 1.5})
    with pytest.raises(ParamValueError, match="pool"):
        FUSIONS.check_params("cnn", {"pool": "sum"})
    with pytest.raises(ParamValueError, match="concat_impute"):
        FUSIONS.check_params("concat_impute", {"mising": "mean"})
