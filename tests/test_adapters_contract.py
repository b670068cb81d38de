"""The adapter contract (trainables/data/adapter.py), run over every registered cohort adapter.

Each adapter module has ``NAME``, ``OPTIONS`` (declared as ``Param`` data) and
``load(root=None, *, strict=False, **options) -> Cohort``; ``COHORTS`` is built from the modules; an unknown
option or a bad value fails with the lookup message before anything is read; a real dataset's stand-in
(``trainables.data.standins.<module>``) loads as a valid cohort, ``strict`` or not; readers import no other
adapter and no stand-in.
"""

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest

from trainables.data import ADAPTERS, COHORTS, STANDIN_MODULES, STANDINS, adapter
from trainables.data.adapter import CohortOptionError
from trainables.data.cohort import MASKED, Cohort
from trainables.registry import REQUIRED, Param

NAMES = [m.NAME for m in ADAPTERS]
GENERATED = {"synthetic": {"n_patients": 6}}  # an adapter whose generator is its own: load generates at root
NO_STANDIN = {"manifest"}  # describes any dataset: there is no one layout to stand in for


def test_cohorts_and_standins_are_built_from_the_modules():
    assert list(COHORTS) == NAMES and len(set(NAMES)) == len(NAMES)
    for m in ADAPTERS:
        assert COHORTS[m.NAME] is m.load, f"{m.NAME}: COHORTS holds a wrapper, not the module's load"
        assert COHORTS.params[m.NAME] == m.OPTIONS
    for s in STANDIN_MODULES:
        assert STANDINS[s.NAME] is s.standin
        params = inspect.signature(s.standin).parameters
        assert list(params)[0] == "out" and params["seed"].kind is inspect.Parameter.KEYWORD_ONLY
        assert params["seed"].default == 0
        reader = adapter(s.NAME)
        assert s.__name__ == "trainables.data.standins." + reader.__name__.rsplit(".", 1)[1]
    assert set(COHORTS) == set(STANDINS) | set(GENERATED) | NO_STANDIN


@pytest.mark.parametrize("name", NAMES)
def test_the_module_has_the_surface(name):
    m = adapter(name)
    assert m.NAME == name
    params = list(inspect.signature(m.load).parameters.values())
    assert [(p.name, p.kind) for p in params] == [("root", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                                                   ("strict", inspect.Parameter.KEYWORD_ONLY),
                                                   ("options", inspect.Parameter.VAR_KEYWORD)]
    assert params[0].default is None and params[1].default is False
    assert m.OPTIONS and not {"root", "strict"} & set(m.OPTIONS)
    for key, p in m.OPTIONS.items():
        assert isinstance(p, Param) and p.doc, f"{name}.{key}: declare it as a Param with its meaning"
        if p.default is not REQUIRED:
            p.check(p.default, f"{name}.{key}")  # the default is a value the option allows
    assert (m.load.__doc__ or "").strip()


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_option_fails_with_the_lookup_message_before_anything_is_read(name, tmp_path):
    m = adapter(name)
    first = sorted(m.OPTIONS)[0]
    typo = first[:-1]  # one letter short: close enough for a suggestion
    with pytest.raises(CohortOptionError) as err:
        m.load(tmp_path / "absent", **{typo: 1})  # root absent: the option check must come first
    assert str(err.value) == (f"unknown {name} option {typo!r} (at --option / cohort_options). Did you mean "
                              f"{first!r}? Valid {name} option names: {', '.join(sorted(m.OPTIONS))}")


@pytest.mark.parametrize("name", NAMES)
def test_a_bad_option_value_names_the_field_and_the_allowed_values(name, tmp_path):
    m = adapter(name)
    for key, p in m.OPTIONS.items():
        with pytest.raises(CohortOptionError) as err:
            m.load(tmp_path / "absent", **{key: object()})
        assert str(err.value).startswith(f"{name}.{key}=<object") and f": allowed {p.allowed()}" in str(err.value)


def test_a_required_option_is_named_when_missing(tmp_path):
    for m in ADAPTERS:
        for key in [k for k, p in m.OPTIONS.items() if p.default is REQUIRED]:
            with pytest.raises(CohortOptionError, match=f"{m.NAME} option {key!r} .* is required"):
                m.load(tmp_path / "absent")


def test_a_choice_is_case_insensitive_and_comes_back_as_declared(tmp_path):
    from trainables.data.adapter import resolve_options

    m = adapter("chexpert")
    assert resolve_options("chexpert", m.OPTIONS, {"uncertainty": "ONES"})["uncertainty"] == "ones"


def _check_cohort(c: Cohort, root: Path) -> None:
    assert isinstance(c, Cohort)
    c.validate()
    assert len(c.samples) > 0 and c.samples["patient_id"].notna().all()
    assert c.targets and all(t.name in c.samples.columns for t in c.targets)
    for t in c.targets:
        labels = c.labels(t.name)
        assert ((labels >= 0) & (labels < len(t.classes)) | (labels == MASKED)).all()
        assert (labels != MASKED).any(), f"target {t.name!r} has no labelled sample"
    if c.modalities:
        assert len(c.instances) > 0
        paths = c.instances["path"]
        assert all(Path(p).is_file() for p in paths) and all(Path(p).is_absolute() for p in paths)
        assert all(str(Path(p).resolve()).startswith(str(root.resolve())) for p in paths)
        assert (c.instances.groupby(["sample_id", "modality"])["order"].apply(lambda o: sorted(o) == list(range(len(o))))).all()
    assert np.array_equal(c.samples["sample_id"].to_numpy(), c.samples["sample_id"].drop_duplicates().to_numpy())


@pytest.mark.parametrize("name", sorted(STANDINS))
def test_a_standin_loads_as_a_valid_cohort_strict_or_not(name, tmp_path):
    root = STANDINS[name](tmp_path / name, seed=0)
    assert root == tmp_path / name
    loose = COHORTS[name](root=root)
    _check_cohort(loose, root)
    strict = COHORTS[name](root=root, strict=True)  # a clean stand-in: strict takes the same files
    assert strict.quarantine == [] and len(strict.instances) == len(loose.instances)


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_a_generated_cohort_loads_as_a_valid_cohort_strict_or_not(name, tmp_path):
    c = COHORTS[name](root=tmp_path / name, strict=True, **GENERATED[name])
    _check_cohort(c, tmp_path / name)


ALLOWED = {"adapter", "cohort", "quarantine", "images", "files", "layouts", "leakage", "duplicates", "header_index"}  # shared leaf modules


@pytest.mark.parametrize("name", NAMES)
def test_a_reader_imports_no_other_adapter_and_no_standin(name):
    m = adapter(name)
    tree = ast.parse(Path(m.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            target = (node.module or "").split(".")
            names = [target[0]] if target[0] else [a.name for a in node.names]
            for n in names:
                if n == "standins" and node.module == "standins.dicom" and name in GENERATED:
                    continue  # a generated cohort writes with the shared DICOM writer
                assert n in ALLOWED, f"{m.__name__} imports .{node.module or n} sideways"
