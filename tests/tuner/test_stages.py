"""configs/stages.yaml: the shipped file loads, and a wrong one is named precisely."""

from __future__ import annotations

import pytest

from model import ConfigError, default_config_dir
from tuner import Stage, load_stages


def test_the_shipped_stages_match_the_design():
    stages = load_stages()
    assert set(stages.stages) == set(Stage)
    assert stages.cycle_batches == 450 and stages.memory_fraction == 0.9
    assert stages.stages[Stage.PROTOTYPING].minutes_allowed == 40
    assert stages.stages[Stage.VALIDATION].minutes_allowed == 110
    assert stages.stages[Stage.PRODUCTION].minutes_allowed is None
    configs = list(stages.stages[Stage.VALIDATION].configurations())
    assert len(configs) == 3 * 3 * 2 and configs[0] == {
        "hidden_channels": 64,
        "num_layers": 4,
        "num_rbf": 32,
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("num_layers: {min: 4, max: 8, step: 2}", "num_layers: {min: 9, max: 8}"),
            r"stages.validation: space.num_layers: min=9 is above max=8",
        ),
        (("num_rbf: [16, 32]", "num_rbf: []"), r"space.num_rbf has no choices"),
        (
            ("memory_fraction: 0.90", "memory_fraction: 1.5"),
            r"memory_fraction: .*less than or equal to 1",
        ),
        (("cycle_batches: 450", "cycle_batchs: 450"), r"cycle_batchs: Extra inputs"),
        (
            ("num_rbf: [16, 32]", "num_rbff: [16, 32]"),
            r"space.num_rbff is not a model knob; choose from .*num_rbf",
        ),
        (("  prototyping:", "  prototype:"), r"stages.prototype"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path, change, expected):
    text = (default_config_dir() / "stages.yaml").read_text()
    assert change[0] in text
    path = tmp_path / "stages.yaml"
    path.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError, match=expected) as info:
        load_stages(path)
    assert str(path) in str(info.value)
