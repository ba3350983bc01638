"""Unit tests for fetchshard.config: layering, path resolution and validation errors."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from fetchshard import config as cfg
from fetchshard.config import Config, background_rgb, load_config, to_plain
from fetchshard.errors import ConfigError, ErrorKind, UsageError, select_kinds


def _write(tmp_path: Path, text: str, name: str = "fetchshard.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(
    config_file: Path | None = None,
    *,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> str:
    """Load a config that must fail; return the one-line ConfigError message."""
    with pytest.raises(ConfigError) as info:
        load_config(config_file, environ=environ or {}, overrides=overrides)
    message = str(info.value)
    assert "\n" not in message, f"message is not a single line: {message!r}"
    assert info.value.exit_code == 2
    return message


# --- defaults and layering ---------------------------------------------------------------


def test_defaults_when_nothing_is_given() -> None:
    config = load_config(None, environ={})
    assert config == Config()
    assert config.fetch.per_host_rate == cfg.DEFAULT_PER_HOST_RATE
    assert config.fetch.max_in_flight == cfg.DEFAULT_MAX_IN_FLIGHT
    assert config.fetch.connect_timeout == cfg.DEFAULT_CONNECT_TIMEOUT
    assert config.fetch.total_timeout == cfg.DEFAULT_TOTAL_TIMEOUT
    assert config.fetch.max_attempts == cfg.DEFAULT_MAX_ATTEMPTS
    assert config.partition.spread == "auto"
    assert config.input.paths == ()
    assert config.input.format == "auto"
    assert config.output.dir == "out"
    assert config.run.rank is None
    assert config.run.world_size is None
    assert config.run.ranks == 1


def test_environment_variables_without_prefix_are_ignored() -> None:
    config = load_config(None, environ={"HOME": "/x", "PATH": "/bin", "_FETCHSHARD_CHILD": "1"})
    assert config == Config()


def test_precedence_defaults_yaml_env_overrides(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "fetch:\n  per_host_rate: 3\n  max_in_flight: 100\n  max_attempts: 4\n",
    )
    env = {"FETCHSHARD_FETCH_PER_HOST_RATE": "5", "FETCHSHARD_FETCH_MAX_ATTEMPTS": "6"}

    yaml_only = load_config(path, environ={})
    assert yaml_only.fetch.per_host_rate == 3.0
    assert isinstance(yaml_only.fetch.per_host_rate, float)
    assert yaml_only.fetch.max_in_flight == 100
    assert yaml_only.fetch.per_host_burst == cfg.DEFAULT_PER_HOST_BURST  # untouched default

    with_env = load_config(path, environ=env)
    assert with_env.fetch.per_host_rate == 5.0
    assert with_env.fetch.max_attempts == 6
    assert with_env.fetch.max_in_flight == 100  # YAML still applies where env is silent

    with_overrides = load_config(path, environ=env, overrides={"fetch.per_host_rate": 7})
    assert with_overrides.fetch.per_host_rate == 7.0
    assert with_overrides.fetch.max_attempts == 6
    assert with_overrides.fetch.max_in_flight == 100


def test_env_beats_defaults_without_a_file() -> None:
    config = load_config(None, environ={"FETCHSHARD_FETCH_PER_HOST_RATE": "5"})
    assert config.fetch.per_host_rate == 5.0


def test_env_values_are_parsed_as_yaml_scalars_and_lists() -> None:
    config = load_config(
        None,
        environ={
            "FETCHSHARD_FETCH_VERIFY_TLS": "false",
            "FETCHSHARD_INPUT_EXTRA_COLUMNS": "[a, b]",
            "FETCHSHARD_RUN_LOG_LEVEL": "debug",
            "FETCHSHARD_PARTITION_SPREAD": "32",
        },
    )
    assert config.fetch.verify_tls is False
    assert config.input.extra_columns == ("a", "b")
    assert config.run.log_level == "debug"
    assert config.partition.spread == 32


def test_overrides_alone_apply() -> None:
    config = load_config(None, environ={}, overrides={"output.dir": "elsewhere", "run.rank": 0})
    assert config.output.dir == "elsewhere"
    assert config.run.rank == 0


def test_empty_yaml_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, ""), environ={}) == Config()


# --- paths relative to the config file ----------------------------------------------------


def test_input_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    absolute = str(tmp_path / "abs.txt")
    path = _write(folder, f"input:\n  paths: [urls.txt, sub/more.csv, {absolute}]\n")
    config = load_config(path, environ={})
    assert config.input.paths == (
        str(folder / "urls.txt"),
        str(folder / "sub" / "more.csv"),
        absolute,
    )


def test_single_input_path_string_becomes_tuple(tmp_path: Path) -> None:
    path = _write(tmp_path, "input:\n  paths: urls.txt\n")
    assert load_config(path, environ={}).input.paths == (str(tmp_path / "urls.txt"),)


def test_input_paths_without_a_file_are_kept_as_given() -> None:
    config = load_config(None, environ={}, overrides={"input.paths": ["rel.txt"]})
    assert config.input.paths == ("rel.txt",)


def test_every_path_option_in_a_file_is_relative_to_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "sub"
    folder.mkdir()
    path = _write(
        folder,
        "input:\n  paths: [urls.txt, 'data/*.csv']\n"
        "output:\n  dir: out\nfetch:\n  ca_bundle: certs/ca.pem\n",
    )
    config = load_config(path, environ={})
    assert config.input.paths == (str(folder / "urls.txt"), str(folder / "data" / "*.csv"))
    assert config.output.dir == str(folder / "out")
    assert config.fetch.ca_bundle == str(folder / "certs" / "ca.pem")
    assert {"input.paths", "output.dir", "fetch.ca_bundle"} <= cfg.PATH_OPTIONS


def test_absolute_and_home_paths_in_a_file_are_kept(tmp_path: Path) -> None:
    folder = tmp_path / "sub"
    folder.mkdir()
    absolute = tmp_path / "elsewhere"
    path = _write(
        folder,
        f"input:\n  paths: {absolute / 'urls.txt'}\n"
        f"output:\n  dir: {absolute / 'out'}\nfetch:\n  ca_bundle: ~/ca.pem\n",
    )
    config = load_config(path, environ={})
    assert config.input.paths == (str(absolute / "urls.txt"),)
    assert config.output.dir == str(absolute / "out")
    assert config.fetch.ca_bundle == "~/ca.pem"


def test_paths_from_environment_and_overrides_stay_relative_to_the_cwd(tmp_path: Path) -> None:
    folder = tmp_path / "sub"
    folder.mkdir()
    path = _write(
        folder, "input:\n  paths: [a.txt]\noutput:\n  dir: out\nfetch:\n  ca_bundle: ca.pem\n"
    )
    environ = {
        "FETCHSHARD_INPUT_PATHS": "[env.txt]",
        "FETCHSHARD_OUTPUT_DIR": "env-out",
        "FETCHSHARD_FETCH_CA_BUNDLE": "env.pem",
    }
    from_env = load_config(path, environ=environ)
    assert from_env.input.paths == ("env.txt",)
    assert from_env.output.dir == "env-out"
    assert from_env.fetch.ca_bundle == "env.pem"

    overrides = {"input.paths": ["cli.txt"], "output.dir": "out2", "fetch.ca_bundle": "cli.pem"}
    from_flags = load_config(path, environ=environ, overrides=overrides)
    assert from_flags.input.paths == ("cli.txt",)
    assert from_flags.output.dir == "out2"
    assert from_flags.fetch.ca_bundle == "cli.pem"


def test_a_path_option_of_the_wrong_type_in_a_file_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "sub"
    folder.mkdir()
    assert _error(_write(folder, "output:\n  dir: [a, b]\n")) == (
        "output.dir: expected a string, got ['a', 'b']"
    )
    assert _error(_write(folder, "input:\n  paths: [a.txt, 5]\n")) == (
        "input.paths: expected a string, got 5"
    )
    assert "fetch.ca_bundle" in _error(_write(folder, "fetch:\n  ca_bundle: 5\n"))
    assert "input" in _error(_write(folder, "input: 5\n"))


# --- validation errors ----------------------------------------------------------------


def test_config_error_is_a_usage_error_with_exit_code_2() -> None:
    assert issubclass(ConfigError, UsageError)
    assert ConfigError.exit_code == 2
    assert ConfigError("x").exit_code == 2


def test_unknown_section(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, "fetchh:\n  per_host_rate: 1\n"))
    assert "unknown section 'fetchh'" in message
    assert "fetch" in message and "input" in message


def test_unknown_section_in_overrides() -> None:
    message = _error(overrides={"nope.key": 1})
    assert "unknown section 'nope'" in message
    assert "command line" in message


def test_unknown_key_lists_known_keys(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, "fetch:\n  per_host_rat: 1\n"))
    assert "fetch.per_host_rat" in message
    assert "known:" in message
    for known in ("per_host_rate", "max_in_flight", "connect_timeout", "verify_tls"):
        assert known in message


def test_unknown_key_from_environment() -> None:
    message = _error(environ={"FETCHSHARD_FETCH_NOPE": "1"})
    assert "fetch.nope" in message
    assert "environment" in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("fetch.max_in_flight", "10", "expected an integer"),
        ("fetch.max_in_flight", True, "expected an integer"),
        ("fetch.max_in_flight", 1.5, "expected an integer"),
        ("fetch.per_host_rate", "abc", "expected a number"),
        ("fetch.per_host_rate", False, "expected a number"),
        ("fetch.per_host_rate", float("inf"), "finite"),
        ("fetch.verify_tls", "yes please", "expected true or false"),
        ("output.dir", 5, "expected a string"),
        ("fetch.headers", ["a"], "mapping"),
        ("input.paths", 3, "list of str"),
    ],
)
def test_wrong_type_names_the_key(key: str, value: Any, expected: str) -> None:
    message = _error(overrides={key: value})
    assert message.startswith(f"{key}:")
    assert expected in message


def test_wrong_type_in_yaml_string_for_int(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, "fetch:\n  max_in_flight: 'ten'\n"))
    assert message.startswith("fetch.max_in_flight:")
    assert "'ten'" in message


def test_wrong_type_from_environment_abc_for_float() -> None:
    message = _error(environ={"FETCHSHARD_FETCH_PER_HOST_RATE": "abc"})
    assert message.startswith("fetch.per_host_rate:")
    assert "'abc'" in message


@pytest.mark.parametrize("rate", [0, 0.0, -1, -0.5])
def test_non_positive_rate(rate: float) -> None:
    message = _error(overrides={"fetch.per_host_rate": rate})
    assert message.startswith("fetch.per_host_rate:")
    assert "greater than 0" in message


@pytest.mark.parametrize(
    "key", ["partition.spread", "fetch.max_in_flight", "fetch.connect_timeout", "run.world_size"]
)
def test_zero_is_rejected_for_positive_keys(key: str) -> None:
    message = _error(overrides={key: 0})
    assert message.startswith(f"{key}:")


def test_spread_is_auto_or_a_positive_number() -> None:
    assert load_config(None, environ={}, overrides={"partition.spread": 8}).partition.spread == 8
    env = {"FETCHSHARD_PARTITION_SPREAD": "auto"}
    assert load_config(None, environ=env).partition.spread == "auto"
    assert load_config(None, environ={"FETCHSHARD_PARTITION_SPREAD": "12"}).partition.spread == 12
    message = _error(overrides={"partition.spread": "wide"})
    assert message == "partition.spread: must be auto or a number of ranks, got 'wide'"


def test_negative_rank_is_rejected_but_zero_is_fine() -> None:
    assert "run.rank" in _error(overrides={"run.rank": -1})
    assert (
        load_config(None, environ={}, overrides={"fetch.max_redirects": 0}).fetch.max_redirects == 0
    )


def test_total_timeout_shorter_than_connect_timeout() -> None:
    message = _error(overrides={"fetch.connect_timeout": 20, "fetch.total_timeout": 10})
    assert "fetch.total_timeout" in message
    assert "fetch.connect_timeout" in message


def test_total_timeout_equal_to_connect_timeout_is_fine() -> None:
    config = load_config(
        None, environ={}, overrides={"fetch.connect_timeout": 15, "fetch.total_timeout": 15}
    )
    assert config.fetch.total_timeout == config.fetch.connect_timeout == 15.0


@pytest.mark.parametrize(("rank", "world_size"), [(4, 4), (5, 4), (1, 1)])
def test_rank_not_below_world_size(rank: int, world_size: int) -> None:
    message = _error(overrides={"run.rank": rank, "run.world_size": world_size})
    assert message.startswith("run.rank:")
    assert "run.world_size" in message


def test_rank_below_world_size_is_fine() -> None:
    config = load_config(None, environ={}, overrides={"run.rank": 3, "run.world_size": 4})
    assert (config.run.rank, config.run.world_size) == (3, 4)


@pytest.mark.parametrize(
    ("key", "value"),
    [("input.format", "xml"), ("output.compression", "brotli"), ("run.log_level", "trace")],
)
def test_bad_choice(key: str, value: str) -> None:
    message = _error(overrides={key: value})
    assert message.startswith(f"{key}:")
    assert "must be one of" in message
    assert repr(value) in message


def test_bad_choice_lists_the_choices() -> None:
    message = _error(overrides={"input.format": "xml"})
    for choice in ("auto", "txt", "csv", "tsv", "jsonl", "parquet"):
        assert choice in message


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "fetch:\n  per_host_rate: 1\n  max_in_flight: [1, 2\n")
    message = _error(path)
    assert str(path) in message
    assert " line " in message
    line = int(message.split(" line ", 1)[1].split(":", 1)[0])
    assert 3 <= line <= 4


def test_malformed_yaml_bad_indentation_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "fetch:\n  per_host_rate: 1\n   max_in_flight: 2\n")
    message = _error(path)
    assert message.startswith(f"{path} line 3:")


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    message = _error(path)
    assert "not found" in message
    assert str(path) in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_yaml_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text)
    message = _error(path)
    assert str(path) in message
    assert "mapping" in message


def test_section_not_a_mapping(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, "fetch: 5\n"))
    assert message.startswith("fetch:")
    assert "mapping" in message


@pytest.mark.parametrize("name", ["FETCHSHARD_NOPE_X", "FETCHSHARD_FETCH", "FETCHSHARD_"])
def test_bad_env_var_name(name: str) -> None:
    message = _error(environ={name: "1"})
    assert name in message
    assert "unknown environment variable" in message


@pytest.mark.parametrize("dotted", ["per_host_rate", "fetch.", ".x"])
def test_bad_override_name(dotted: str) -> None:
    message = _error(overrides={dotted: 1})
    assert "SECTION.KEY" in message or "unknown section" in message


def test_kubernetes_world_size_variable_is_not_a_config_error() -> None:
    environ = {"JOB_COMPLETION_INDEX": "1", "FETCHSHARD_WORLD_SIZE": "4"}
    assert load_config(None, environ=environ) == Config()


# --- to_plain -------------------------------------------------------------------------


def test_to_plain_round_trips_through_json(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "input:\n  paths: [urls.txt]\n  extra_columns: [lang]\n"
        "fetch:\n  headers: {X-Test: 1}\n  contact: me@example.org\n"
        "  hosts: {a.example: {rate: 2, headers: {Authorization: Bearer t0ken}}}\n",
    )
    config = load_config(path, environ={}, overrides={"run.rank": 0, "run.world_size": 2})
    plain = to_plain(config)
    assert set(plain) == {"input", "output", "partition", "fetch", "run", "images", "hub", "plan"}
    decoded = json.loads(json.dumps(plain))
    assert decoded["fetch"]["per_host_rate"] == config.fetch.per_host_rate
    assert decoded["fetch"]["headers"] == {"X-Test": "***"}  # header values are never shown
    assert decoded["fetch"]["hosts"]["a.example"] == {
        "rate": 2.0,
        "burst": None,
        "concurrency": None,
        "headers": {"Authorization": "***"},
    }
    assert "t0ken" not in json.dumps(plain)
    assert decoded["fetch"]["contact"] == "me@example.org"
    assert decoded["input"]["paths"] == [str(tmp_path / "urls.txt")]
    assert decoded["run"]["world_size"] == 2
    # Feeding the plain dict back as overrides rebuilds the same config, secrets aside.
    overrides = {f"{s}.{k}": v for s, section in decoded.items() for k, v in section.items()}
    rebuilt = load_config(None, environ={}, overrides=overrides)
    assert rebuilt.fetch.headers == {"X-Test": "***"}
    assert dataclasses.replace(rebuilt, fetch=config.fetch) == config


def test_to_plain_of_defaults_is_json_serializable() -> None:
    plain = to_plain(Config())
    decoded = json.loads(json.dumps(plain))
    assert decoded["partition"] == {"spread": "auto"}
    assert decoded["input"]["paths"] == []
    assert decoded["input"]["extra_columns"] is None
    assert decoded["fetch"]["headers"] == {}
    assert decoded["run"]["rank"] is None


def test_text_options_from_env_stay_text() -> None:
    environ = {"FETCHSHARD_OUTPUT_DIR": "2024", "FETCHSHARD_INPUT_URL_COLUMN": "no"}
    config = load_config(None, environ=environ)
    assert config.output.dir == "2024"
    assert config.input.url_column == "no"


def test_example_config_lists_every_option_with_its_default() -> None:
    import dataclasses

    example = Path(__file__).resolve().parents[2] / "examples" / "config.yaml"
    import yaml

    data = yaml.safe_load(example.read_text())
    loaded = load_config(example, environ={})
    defaults = Config()
    for section in ("input", "output", "partition", "fetch", "run", "images", "hub", "plan"):
        names = {f.name for f in dataclasses.fields(getattr(defaults, section))}
        assert set(data[section]) == names, section
        for name in names:
            if f"{section}.{name}" in cfg.PATH_OPTIONS:  # relative to examples/
                continue
            assert getattr(getattr(loaded, section), name) == getattr(
                getattr(defaults, section), name
            ), f"{section}.{name}"


def test_retry_failed_words_select_kinds() -> None:
    assert select_kinds(("http_5xx", "timeout")) == {"http_5xx", "timeout"}
    transient = select_kinds(("transient",))
    assert transient == {k.value for k in ErrorKind if k.transient} - {"interrupted"}
    assert select_kinds(("transient", "http_404")) == transient | {"http_404"}
    assert select_kinds(("http_404", "all")) is None
    with pytest.raises(ConfigError, match="unknown error kind 'interrupted'"):
        select_kinds(("interrupted",))  # never a committed row
    assert load_config(overrides={"run.retry_failed": "all"}).run.retry_failed == ("all",)


# --- images ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("images.mode", "thumbnail", "images.mode: must be one of off, verify, resize"),
        ("images.resize_mode", "stretch", "images.resize_mode: must be one of no, keep_ratio"),
        ("images.image_size", 0, "images.image_size: must be greater than 0"),
        ("images.encode_quality", 101, "images.encode_quality: must be 1..100"),
        ("images.encode_format", "gif", "images.encode_format: must be one of jpeg, png, webp"),
        ("images.background", "not-a-colour", "images.background: 'not-a-colour' is not a colour"),
        ("images.max_aspect_ratio", 0.5, "images.max_aspect_ratio: must be at least 1"),
        ("images.hash", "sha1", "images.hash: must be one of sha256, md5"),
        ("images.workers", -1, "images.workers: must be 0 or more"),
    ],
)
def test_a_bad_images_option_is_one_line_naming_it(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, environ={}, overrides={key: value})


def test_images_mode_off_may_be_written_bare_in_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, "images:\n  mode: off\n  background: '#102030'\n")
    config = load_config(path, environ={})
    assert config.images.mode == "off" and config.images.background == "#102030"
    assert background_rgb(config.images.background) == (16, 32, 48)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"output.mode": "zip"}, "output.mode: must be one of parquet, files, got 'zip'"),
        ({"output.body_file_above": -1}, "output.body_file_above: must be 0 or more, got -1"),
        ({"output.max_file_bytes": -5}, "output.max_file_bytes: must be 0 or more, got -5"),
        ({"fetch.min_body_bytes": -1}, "fetch.min_body_bytes: must be 0 or more, got -1"),
        ({"fetch.segments": 0}, "fetch.segments: must be greater than 0, got 0"),
        ({"fetch.segments": 65}, "fetch.segments: at most 64, got 65"),
        ({"fetch.segment_above": 0}, "fetch.segment_above: must be greater than 0, got 0"),
        (
            {"fetch.segment_max_bytes": 1000},
            "fetch.segment_max_bytes: at least 1048576 (1 MiB), got 1000",
        ),
        (
            {"input.checksum_algorithm": "crc32"},
            "input.checksum_algorithm: must be one of sha256, md5, sha1, git-sha1, auto, "
            "got 'crc32'",
        ),
        (
            {"output.mode": "files", "output.store_body": False},
            "output.store_body: must be true with output.mode files (files are bodies)",
        ),
        (
            {"output.mode": "files", "images.mode": "verify"},
            "images.mode: the images stage needs bodies in memory, not with output.mode files",
        ),
    ],
)
def test_files_options_are_checked(overrides: dict[str, Any], message: str) -> None:
    assert _error(overrides=overrides) == message


def test_files_mode_is_off_by_default_and_set_by_one_key() -> None:
    assert load_config(None, environ={}).output.mode == "parquet"
    config = load_config(None, environ={"FETCHSHARD_OUTPUT_MODE": "files"})
    assert config.output.mode == "files" and config.output.fsync_files


def test_segments_are_off_by_default_and_split_above_50_gb() -> None:
    fetch = load_config(None, environ={}).fetch
    assert (fetch.segments, fetch.segment_above, fetch.segment_max_bytes) == (
        1,
        256 * 1024 * 1024,
        50 * 1000**3,
    )
    environ = {"FETCHSHARD_FETCH_SEGMENTS": "8", "FETCHSHARD_FETCH_SEGMENT_ABOVE": "1000000"}
    fetch = load_config(None, environ=environ).fetch
    assert (fetch.segments, fetch.segment_above) == (8, 1_000_000)


# --- plan -----------------------------------------------------------------------------


def test_plan_memory_is_768_mib_by_default_and_at_least_16_mib() -> None:
    assert load_config(None, environ={}).plan.memory == 768 << 20
    environ = {"FETCHSHARD_PLAN_MEMORY": str(64 << 20)}
    assert load_config(None, environ=environ).plan.memory == 64 << 20
    assert load_config(overrides={"plan.memory": 16 << 20}).plan.memory == 16 << 20
    assert _error(overrides={"plan.memory": (16 << 20) - 1}) == (
        "plan.memory: at least 16777216 (16 MiB), got 16777215"
    )
    assert _error(overrides={"plan.memory": 0}) == "plan.memory: must be greater than 0, got 0"
    assert _error(overrides={"plan.memory": "1GiB"}) == (
        "plan.memory: expected an integer, got '1GiB'"
    )


def test_an_s3_output_has_a_state_folder_and_its_own_checks(tmp_path: Path) -> None:
    config = load_config(overrides={"output.dir": "s3://bkt/a/b"}, environ={})
    assert str(config.output.bucket) == "s3://bkt/a/b"
    assert config.output.root == Path(".fetchshard-state", "bkt", "a", "b")
    assert config.output.file_limit == 5 * 1024**3  # one PUT
    chosen = load_config(
        overrides={"output.dir": "s3://bkt/x", "output.state_dir": str(tmp_path)}, environ={}
    )
    assert chosen.output.root == tmp_path
    local = load_config(overrides={"output.dir": str(tmp_path)}, environ={})
    assert local.output.bucket is None and local.output.root == tmp_path
    assert local.output.file_limit == 0
    # A config file's s3:// output is a URL, not a path to rebase on the file's folder.
    file = tmp_path / "c.yaml"
    file.write_text("output:\n  dir: s3://bkt/run\n  state_dir: state\n")
    loaded = load_config(file, environ={})
    assert loaded.output.dir == "s3://bkt/run"
    assert loaded.output.root == tmp_path / "state"


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"output.state_dir": "x"}, "only with an s3:// output.dir"),
        ({"output.s3_endpoint": "http://127.0.0.1:9"}, "only with an s3:// output.dir"),
        ({"output.dir": "s3://bkt/r", "output.part_max_bytes": 6 * 1024**3}, "at most 5GiB"),
        ({"output.dir": "s3://bkt/r", "output.s3_endpoint": "ftp://h"}, "not an http(s) URL"),
        ({"output.dir": "s3://KEY:SECRET@bkt/r"}, "credentials in it"),
        ({"output.dir": "gs://bkt/r"}, "only s3:// is supported"),
    ],
)
def test_an_s3_output_is_checked_before_any_work(overrides: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(overrides=overrides, environ={})
    assert says in str(raised.value)
    assert "SECRET" not in str(raised.value)
