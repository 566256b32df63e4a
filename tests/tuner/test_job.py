"""The job spec: presets, explicit options over them, and errors that name the field."""

import json

import pytest

from model import ConfigError
from tests.conftest import REPO
from tuner import Stage, build_job_spec, result_schema, stages_config


def test_explicit_options_win_over_the_preset():
    spec = build_job_spec({"preset": "quick", "fit_trials": 3, "stages": ["production"]})
    assert spec.fit_trials == 3
    assert spec.max_atoms == 40  # from configs/presets/quick.yaml
    assert spec.stages == (Stage.PRODUCTION,)
    stages = stages_config(spec)
    assert stages.stages[Stage.PRODUCTION].space["hidden_channels"] == [16, 32]
    assert stages.max_batch_size == 64


def test_stages_run_in_development_order_whatever_order_they_are_given():
    spec = build_job_spec({"stages": ["production", "prototyping"]})
    assert spec.stages == (Stage.PROTOTYPING, Stage.PRODUCTION)


def test_a_job_id_is_made_when_none_is_given_and_names_the_folder(tmp_path):
    spec = build_job_spec({"storage": str(tmp_path)})
    assert spec.job_dir == tmp_path / spec.job_id


def test_space_overrides_replace_a_knob_of_one_stage():
    spec = build_job_spec({"space": {"validation": {"num_layers": {"min": 2, "max": 4}}}})
    space = stages_config(spec).stages[Stage.VALIDATION].space
    assert space["num_layers"].values() == [2, 3, 4]
    assert space["hidden_channels"] == [64, 128, 256]  # the other knobs stay


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"stages": ["staging"]}, "stages.0: Input should be 'prototyping', 'validation' or"),
        ({"preset": "huge"}, "preset 'huge'"),
        ({"fit_trials": 0}, "fit_trials: Input should be greater than 0"),
        ({"tune_trials": -2}, "tune_trials: Input should be greater than 0"),
        ({"reduction_factor": 1}, "reduction_factor: Input should be greater than 1"),
        ({"job_id": "../etc"}, "'../etc' is not a job id"),
        ({"memory_budget": "lots"}, "lots"),
        ({"fit_trails": 3}, "fit_trails: unknown option; accepted:"),
        ({"space": {"production": {"num_layers": {"min": 8, "max": 4}}}}, "min=8 is above max=4"),
        ({"space": {"production": {"hidden_channels": []}}}, "hidden_channels has no choices"),
        ({"space": {"production": {"depth": [2]}}}, "space.depth is not a model knob"),
    ],
)
def test_bad_options_are_errors_naming_the_field(given, named):
    with pytest.raises(ConfigError) as error:
        build_job_spec(given)
    assert named in str(error.value)


def test_the_published_result_schema_is_the_one_the_code_makes():
    published = json.loads((REPO / "docs" / "result.schema.json").read_text())
    assert published == result_schema(), "regenerate: stagetune schema > docs/result.schema.json"


def _real_data(pdbbind_mini, tmp_path):
    from model import load_train_config
    from tuner import JobData

    config = load_train_config(
        settings={"data.source": str(pdbbind_mini), "data.cache_dir": str(tmp_path / "cache")}
    )
    return config, JobData.read(config)


def test_production_data_limits_are_measured_on_a_real_root(pdbbind_mini, tmp_path):
    """The largest complex of the data, uncropped, is what the probe sample must cover."""
    import csv

    from tuner import load_stages

    config, data = _real_data(pdbbind_mini, tmp_path)
    stats = data.stats(load_stages().stages[Stage.PRODUCTION])
    with (pdbbind_mini / "atoms.csv").open() as f:
        rows = list(csv.DictReader(f))
    largest = max(int(r["pocket_heavy_atoms"]) + int(r["ligand_heavy_atoms"]) for r in rows)
    assert stats.atoms_needed == largest
    assert stats.training_samples == round(len(rows) * (1 - config.data.val_fraction))


def test_max_atoms_percentile_changes_productions_answer(pdbbind_mini, tmp_path):
    """configs/stages.yaml's max_atoms_percentile is applied: a probe sample that covers the
    median complex but not the largest is enough at percentile 50, and not at 100."""
    from tests.tuner.test_policies import cand, probe
    from tuner import choose, load_stages

    _, data = _real_data(pdbbind_mini, tmp_path)
    counts = sorted(data.atom_counts)
    median, largest = counts[len(counts) // 2 - 1], counts[-1]
    assert median < largest
    table = [cand("s", probe(1_000_000, 64, atoms=median))]
    answers = {}
    for percentile in (100, 50):
        stages = load_stages(
            overlays=[
                {"stages": {"production": {"data_limits": {"max_atoms_percentile": percentile}}}}
            ]
        )
        stats = data.stats(stages.stages[Stage.PRODUCTION])
        answers[percentile] = choose(Stage.PRODUCTION, stages, table, stats)
    assert not answers[100].feasible and f"need {largest}" in answers[100].reason
    assert answers[50].feasible and answers[50].knobs == {"name": "s"}
