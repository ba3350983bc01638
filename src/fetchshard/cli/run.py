"""``fetchshard run``: fetch the inputs into the output folder, as one rank or as N local ones."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fetchshard.cli.common import (
    ExtraColumnsOption,
    FormatOption,
    IdColumnOption,
    LogLevelOption,
    OutputOption,
    RankOption,
    SetOption,
    UrlColumnOption,
    WorldSizeOption,
    input_flags,
    logging_to_stderr,
    user_errors,
)

CONFIG_SUFFIXES = (".yaml", ".yml")


def split_inputs(inputs: list[str]) -> tuple[Path | None, list[str]]:
    """A lone ``*.yaml`` argument is the config file; anything else is input paths."""
    configs = [i for i in inputs if i.lower().endswith(CONFIG_SUFFIXES)]
    if len(configs) > 1:
        raise typer.BadParameter("give at most one config file", param_hint="INPUTS")
    others = [i for i in inputs if i not in configs]
    return (Path(configs[0]) if configs else None), others


def split_kinds(words: list[str]) -> tuple[list[str], list[str]]:
    """``--retry-failed [KIND ...]``: the kinds given after the flag land among the inputs
    (a flag takes no values); take back the words that name kinds and are not files."""
    from fetchshard.errors import KIND_WORDS, ConfigError

    kinds, paths = [], []
    for word in words:
        exists = os.path.exists(word)
        if word in KIND_WORDS and exists:
            raise ConfigError(
                f"--retry-failed: {word!r} is both an error kind and a file here; "
                f"write ./{word} for the file"
            )
        if word in KIND_WORDS:
            kinds.append(word)
        elif not exists and word.isidentifier():  # a misspelt kind, not a path
            raise ConfigError(
                f"--retry-failed: {word!r} is neither an error kind nor an input that exists "
                f"(kinds: {', '.join(sorted(KIND_WORDS))})"
            )
        else:
            paths.append(word)
    return kinds, paths


def _set_pairs(pairs: list[str]) -> dict[str, Any]:
    from fetchshard.config import parse_value
    from fetchshard.errors import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected SECTION.KEY=VALUE")
        out[key.strip()] = parse_value(key.strip(), raw)
    return out


class _NoPandas:
    """An import finder that says pandas is not installed."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"{name} is not used by fetchshard run", name=name)


def skip_pandas() -> None:
    """Keep pandas out of a rank's process: pyarrow imports it, when it is installed, on the
    first ``pa.array()`` of a Python list, and a run never uses it (measured: 0.28 s of CPU
    and 40 MB of RSS per rank process). To pyarrow, a refused import is pandas missing.
    Only for a process that is ``fetchshard run`` (cli.main), never one that imports us."""
    if "pandas" not in sys.modules and not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())


def run_command(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="URL files, globs or folders (txt, csv, tsv, jsonl, parquet; .gz/.zst), "
            "and/or one config.yaml.",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = None,
    ranks: Annotated[
        int | None,
        typer.Option(help="Start N local rank processes (the laptop's way to use all cores)."),
    ] = None,
    rank: RankOption = None,
    world_size: WorldSizeOption = None,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Discard this output folder's previous run (of these ranks) and start over.",
        ),
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="Fetch again the items whose row is a failure: of the error kinds named after "
            "the flag (e.g. --retry-failed http_5xx timeout), 'all', or by default the "
            "transient ones. Nothing else is fetched again.",
        ),
    ] = False,
    url_column: UrlColumnOption = None,
    id_column: IdColumnOption = None,
    extra_columns: ExtraColumnsOption = None,
    input_format: FormatOption = None,
    contact: Annotated[
        str | None, typer.Option(help="Contact (URL or e-mail) put in the User-Agent.")
    ] = None,
    per_host_rate: Annotated[
        float | None, typer.Option(help="Requests per second per host, over all ranks.")
    ] = None,
    max_in_flight: Annotated[int | None, typer.Option(help="Concurrent fetches per rank.")] = None,
    images: Annotated[
        str | None,
        typer.Option(
            help="Image stage (images.mode): verify (decode check, sizes, hashes; the bytes "
            "kept) or resize."
        ),
    ] = None,
    resize: Annotated[
        int | None,
        typer.Option(
            metavar="PX",
            help="Resize every image to PX (images.image_size; turns on --images resize).",
        ),
    ] = None,
    resize_mode: Annotated[
        str | None,
        typer.Option(help="no, keep_ratio, keep_ratio_largest, center_crop or border."),
    ] = None,
    files: Annotated[
        bool,
        typer.Option(
            "--files",
            help="Write every body as a file under OUT/files/HOST/PATH (output.mode files); "
            "the parts hold each file's path, size, hashes and status.",
        ),
    ] = False,
    log_level: LogLevelOption = None,
    set_: SetOption = None,
) -> None:
    """Fetch every URL of the inputs into Parquet parts under the output folder.

    Options come from embedded defaults, then the config file, then FETCHSHARD_<SECTION>_<KEY>
    environment variables, then these flags. Exit codes: 0 done, 1 failure, 2 bad usage or
    config, 75 interrupted (rerun the same command to resume).
    """

    config_file, paths = split_inputs(inputs or [])
    flags: dict[str, Any] = {
        "output.dir": output,
        "run.ranks": ranks,
        "run.rank": rank,
        "run.world_size": world_size,
        "run.restart": True if restart else None,
        **input_flags(url_column, id_column, extra_columns, input_format, log_level),
        "fetch.contact": contact,
        "fetch.per_host_rate": per_host_rate,
        "fetch.max_in_flight": max_in_flight,
        "images.mode": images or ("resize" if resize is not None else None),
        "images.image_size": resize,
        "images.resize_mode": resize_mode,
        "output.mode": "files" if files else None,
    }
    with user_errors():
        if resize is not None and images not in (None, "resize"):
            from fetchshard.errors import ConfigError

            raise ConfigError(f"--resize resizes images; it does not go with --images {images}")
        if retry_failed:
            kinds, paths = split_kinds(paths)
            flags["run.retry_failed"] = kinds or ["transient"]
        config, overrides = rank_command_config(config_file, paths, flags, set_)
        with logging_to_stderr(config.run.log_level):
            code = _one_rank_or_many(config, config_file, overrides)
    raise typer.Exit(code)


def rank_command_config(
    config_file: Path | None, paths: list[str], flags: dict[str, Any], set_: list[str] | None
) -> tuple[Any, dict[str, Any]]:
    """The config of a command whose processes are ranks (run, plan), and the overrides a
    launcher hands its ranks: flags, input paths and --set over the config file; a rank
    started by --ranks gets its launcher's command line as data, below its own."""
    from fetchshard.config import load_config
    from fetchshard.launch import inherited_overrides

    overrides = inherited_overrides(os.environ)
    overrides.update({k: v for k, v in flags.items() if v is not None})
    if paths:
        overrides["input.paths"] = [os.path.abspath(p) for p in paths]
    overrides.update(_set_pairs(set_ or []))
    return load_config(config_file, overrides=overrides), overrides


def check_rank_options(config: Any) -> None:
    """An input, and --ranks without --rank."""
    from fetchshard.errors import ConfigError

    if not config.input.paths:
        raise ConfigError("no input: give URL files on the command line or input.paths in a config")
    if config.run.ranks > 1 and config.run.rank is not None:
        raise ConfigError("--ranks starts every rank itself; do not combine it with --rank")


def _one_rank_or_many(config: Any, config_file: Path | None, overrides: dict[str, Any]) -> int:
    """One rank in this process, or (``run.ranks`` > 1) N rank processes launched from here."""
    from fetchshard.inputs import validate_inputs
    from fetchshard.launch import launch_ranks

    check_rank_options(config)
    run_cfg = config.run
    if run_cfg.ranks > 1:
        from fetchshard.plan import plan_in_use

        plan_in_use(config, validate_inputs(config.input), run_cfg.ranks)  # complete, its own
        return launch_ranks(
            config_file,
            overrides,
            run_cfg.ranks,
            output=Path(config.output.dir),
            interactive=sys.stderr.isatty(),  # one bar of the job's totals (report.live)
        )
    # Only a rank needs the engine (aiohttp, ~0.25 s to import); --ranks starts its ranks
    # sooner without it.
    from fetchshard.engine.rank import is_interactive, run_rank
    from fetchshard.ranks import detect_rank

    info = detect_rank(os.environ, rank=run_cfg.rank, world_size=run_cfg.world_size)
    return run_rank(config, info, interactive=is_interactive()).exit_code
