"""What the launcher hands its ranks as data: its overrides, the command it records."""

from __future__ import annotations

import json

import pytest

from fetchshard.environment import CHILD_COMMAND, CHILD_OVERRIDES
from fetchshard.errors import ConfigError
from fetchshard.launch import inherited_command, inherited_overrides


def test_overrides_round_trip_exactly_through_the_environment() -> None:
    overrides = {
        "input.paths": ["/data/a b.txt", "/data/ü.csv"],
        "fetch.per_host_rate": 2.5,
        "fetch.headers": {"Authorization": "Bearer x: y"},
        "input.extra_columns": ["caption"],
        "run.restart": True,
        "output.dir": "2024",
    }
    environ = {CHILD_OVERRIDES: json.dumps(overrides)}
    assert inherited_overrides(environ) == overrides
    assert inherited_overrides({}) == {}


@pytest.mark.parametrize("raw", ["{broken", "[1, 2]"])
def test_a_broken_hand_over_is_a_config_error(raw: str) -> None:
    with pytest.raises(ConfigError, match=CHILD_OVERRIDES):
        inherited_overrides({CHILD_OVERRIDES: raw})


def test_the_recorded_command_round_trips_through_the_environment() -> None:
    command = ["fetchshard.run", "/data/a b.txt", "output=out", "fetch.headers=***"]
    assert inherited_command({CHILD_COMMAND: json.dumps(command)}) == command
    assert inherited_command({}) is None


@pytest.mark.parametrize("raw", ["{broken", '{"a": 1}'])
def test_a_broken_command_hand_over_is_a_config_error(raw: str) -> None:
    with pytest.raises(ConfigError, match=CHILD_COMMAND):
        inherited_command({CHILD_COMMAND: raw})
