"""Every setting is one environment variable in one group, checked at start with the variable named."""

from __future__ import annotations

import pytest

from pipeline.config import GROUPS, VARIABLES, Settings
from pipeline.errors import ConfigError

BAD = {"LOGOS_K": "0", "LOGOS_CROP_PADDING": "1.5", "LOGOS_EMBED_RUNTIME": "tensorflow", "LOGOS_DEMO": "huge",
       "LOGOS_OPEN_SET_SHARE": "1", "LOGOS_TARGET_PRECISION": "0", "LOGOS_MAX_BOXES": "0", "PORT": "70000",
       "LOGOS_QUEUE_TIMEOUT": "0", "LOGOS_DISTANCE_QUANTILE": "0", "LOGOS_MAX_DISTANCE": "3"}


def test_each_variable_sets_one_field_in_a_known_group():
    fields = [variable.field for variable in VARIABLES]
    assert len(set(fields)) == len(fields) == len({variable.env for variable in VARIABLES})
    assert set(fields) == set(Settings.__dataclass_fields__)  # nothing configurable is left out, nothing invented
    assert {variable.group for variable in VARIABLES} == set(GROUPS)


@pytest.mark.parametrize(("env", "raw"), sorted(BAD.items()))
def test_a_value_out_of_range_stops_the_start_naming_its_variable(env, raw, tmp_path):
    with pytest.raises(ConfigError, match=rf"^{env} \("):
        Settings.from_env({env: raw}, data_dir=tmp_path)


def test_defaults_pass_their_own_checks_and_a_bad_type_is_named_too(tmp_path):
    assert Settings.from_env({}, data_dir=tmp_path).k == 10
    with pytest.raises(ConfigError, match="LOGOS_K='ten' is not a valid int"):
        Settings.from_env({"LOGOS_K": "ten"}, data_dir=tmp_path)
