import pytest

from trainables.heads import HEADS
from trainables.pooling import POOLINGS
from trainables.registry import UnknownComponentError, build


def test_unknown_name_lists_valid_names_and_suggests_the_closest():
    with pytest.raises(UnknownComponentError) as e:
        build(POOLINGS, "atention", "space.pooling")
    msg = str(e.value)
    assert "Did you mean 'attention'?" in msg
    assert "gated_attention" in msg and "mean" in msg and "space.pooling" in msg


def test_dict_value_passes_the_chosen_components_parameters():
    p = build(POOLINGS, {"name": "attention", "attention": {"hidden_dim": 7}, "mean": {}}, in_dim=5)
    assert p.V.out_features == 7


def test_bad_parameter_names_the_component():
    with pytest.raises(TypeError, match="head 'logreg'"):
        build(HEADS, {"name": "logreg", "logreg": {"CC": 1.0}})
