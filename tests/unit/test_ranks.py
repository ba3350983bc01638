"""Unit tests for fetchshard.ranks: rank and world size from launchers and flags.

Every test passes its own environ dict; os.environ is never read or changed.
"""

from __future__ import annotations

import pytest

from fetchshard.errors import RankError, UsageError
from fetchshard.ranks import RankInfo, detect_rank


@pytest.mark.parametrize(
    ("environ", "rank", "size", "source"),
    [
        ({"SLURM_PROCID": "3", "SLURM_NTASKS": "8"}, 3, 8, "SLURM"),
        (
            {"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4", "SLURM_NTASKS": "8"},
            3,
            4,
            "SLURM",
        ),
        ({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "5"}, 2, 5, "Open MPI"),
        ({"PMI_RANK": "0", "PMI_SIZE": "2"}, 0, 2, "PMI"),
        ({"PMIX_RANK": "6", "PMIX_SIZE": "7"}, 6, 7, "PMIx"),
        ({"RANK": "1", "WORLD_SIZE": "4"}, 1, 4, "torchrun"),
        (
            {"JOB_COMPLETION_INDEX": "9", "FETCHSHARD_WORLD_SIZE": "10"},
            9,
            10,
            "Kubernetes indexed job",
        ),
    ],
)
def test_launchers(environ: dict[str, str], rank: int, size: int, source: str) -> None:
    info = detect_rank(environ)
    assert info == RankInfo(rank, size, source)
    assert info.describe == f"rank {rank} of {size} (from {source})"


def test_slurm_step_num_tasks_preferred_over_ntasks() -> None:
    environ = {
        "SLURM_JOB_ID": "123",
        "SLURM_STEP_ID": "0",
        "SLURM_PROCID": "5",
        "SLURM_NTASKS": "16",
        "SLURM_STEP_NUM_TASKS": "6",
    }
    info = detect_rank(environ)
    assert (info.rank, info.world_size, info.source) == (5, 6, "SLURM")


def test_slurm_wins_over_later_launchers() -> None:
    environ = {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "RANK": "7", "WORLD_SIZE": "8"}
    assert detect_rank(environ) == RankInfo(1, 2, "SLURM")


def test_unrelated_environment_gives_default() -> None:
    info = detect_rank({"HOME": "/home/x", "PATH": "/bin", "LOCAL_RANK": "3"})
    assert (info.rank, info.world_size) == (0, 1)


def test_default_is_rank_0_of_1_with_source() -> None:
    info = detect_rank({})
    assert (info.rank, info.world_size) == (0, 1)
    assert isinstance(info.source, str) and info.source
    assert "default" in info.source
    assert "rank 0 of 1" in info.describe


def test_explicit_rank_and_world_size_win_over_environment() -> None:
    environ = {"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "RANK": "1", "WORLD_SIZE": "2"}
    info = detect_rank(environ, rank=1, world_size=3)
    assert (info.rank, info.world_size) == (1, 3)
    assert info.source == "--rank/--world-size"


def test_explicit_values_ignore_broken_environment() -> None:
    info = detect_rank({"SLURM_PROCID": "zero", "SLURM_NTASKS": "x"}, rank=0, world_size=1)
    assert (info.rank, info.world_size) == (0, 1)


@pytest.mark.parametrize(("rank", "world_size"), [(0, None), (None, 4), (2, None)])
def test_only_one_of_rank_and_world_size(rank: int | None, world_size: int | None) -> None:
    with pytest.raises(RankError, match="together"):
        detect_rank({}, rank=rank, world_size=world_size)


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({"SLURM_PROCID": "one", "SLURM_NTASKS": "4"}, "SLURM_PROCID"),
        ({"SLURM_PROCID": "1", "SLURM_NTASKS": "4.0"}, "SLURM_NTASKS"),
        (
            {"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "", "SLURM_NTASKS": "4"},
            "SLURM_STEP_NUM_TASKS",
        ),
        ({"OMPI_COMM_WORLD_RANK": "x", "OMPI_COMM_WORLD_SIZE": "2"}, "OMPI_COMM_WORLD_RANK"),
        ({"PMI_RANK": "0", "PMI_SIZE": "two"}, "PMI_SIZE"),
        ({"PMIX_RANK": "0", "PMIX_SIZE": "2x"}, "PMIX_SIZE"),
        ({"RANK": "r0", "WORLD_SIZE": "2"}, "RANK"),
        ({"JOB_COMPLETION_INDEX": "0", "FETCHSHARD_WORLD_SIZE": "n"}, "FETCHSHARD_WORLD_SIZE"),
    ],
)
def test_non_integer_value_names_the_variable(environ: dict[str, str], name: str) -> None:
    with pytest.raises(RankError) as info:
        detect_rank(environ)
    assert name in str(info.value)
    assert "not an integer" in str(info.value)


def test_rank_variable_without_size_variable() -> None:
    with pytest.raises(RankError) as info:
        detect_rank({"RANK": "0"})
    assert "RANK" in str(info.value)
    assert "WORLD_SIZE" in str(info.value)


@pytest.mark.parametrize(
    "environ",
    [
        {"SLURM_PROCID": "4", "SLURM_NTASKS": "4"},
        {"OMPI_COMM_WORLD_RANK": "9", "OMPI_COMM_WORLD_SIZE": "2"},
        {"RANK": "-1", "WORLD_SIZE": "2"},
    ],
)
def test_rank_outside_size_from_environment(environ: dict[str, str]) -> None:
    with pytest.raises(RankError, match="outside"):
        detect_rank(environ)


@pytest.mark.parametrize(("rank", "world_size"), [(4, 4), (5, 4), (-1, 4)])
def test_explicit_rank_outside_size(rank: int, world_size: int) -> None:
    with pytest.raises(RankError, match="outside"):
        detect_rank({}, rank=rank, world_size=world_size)


@pytest.mark.parametrize(
    ("environ", "kwargs"),
    [
        ({"PMI_RANK": "0", "PMI_SIZE": "0"}, {}),
        ({"RANK": "0", "WORLD_SIZE": "-2"}, {}),
        ({}, {"rank": 0, "world_size": 0}),
    ],
)
def test_world_size_below_one(environ: dict[str, str], kwargs: dict[str, int]) -> None:
    with pytest.raises(RankError, match="at least 1"):
        detect_rank(environ, **kwargs)


# --- sbatch without srun -----------------------------------------------------------------


def test_slurm_job_without_step_is_refused() -> None:
    environ = {"SLURM_JOB_ID": "42", "SLURM_NTASKS": "4", "SLURM_PROCID": "0"}
    with pytest.raises(RankError) as info:
        detect_rank(environ)
    assert "srun" in str(info.value)
    assert "SLURM_NTASKS=4" in str(info.value)


def test_slurm_job_without_step_is_refused_even_without_procid() -> None:
    with pytest.raises(RankError, match="srun"):
        detect_rank({"SLURM_JOB_ID": "42", "SLURM_NTASKS": "4"})


def test_slurm_job_with_step_works() -> None:
    environ = {
        "SLURM_JOB_ID": "42",
        "SLURM_STEP_ID": "0",
        "SLURM_NTASKS": "4",
        "SLURM_PROCID": "2",
    }
    assert detect_rank(environ) == RankInfo(2, 4, "SLURM")


def test_slurm_job_without_step_but_explicit_rank_is_not_refused() -> None:
    environ = {"SLURM_JOB_ID": "42", "SLURM_NTASKS": "4", "SLURM_PROCID": "0"}
    info = detect_rank(environ, rank=3, world_size=4)
    assert (info.rank, info.world_size, info.source) == (3, 4, "--rank/--world-size")


@pytest.mark.parametrize("ntasks", [None, "1", "not-a-number"])
def test_slurm_job_without_step_and_single_task_is_fine(ntasks: str | None) -> None:
    environ = {"SLURM_JOB_ID": "42"}
    if ntasks is not None:
        environ["SLURM_NTASKS"] = ntasks
    info = detect_rank(environ)
    assert (info.rank, info.world_size) == (0, 1)


def test_rank_error_exit_code() -> None:
    assert issubclass(RankError, UsageError)
    assert RankError.exit_code == 2
    with pytest.raises(RankError) as info:
        detect_rank({}, rank=0)
    assert info.value.exit_code == 2


def test_cpus_available_prefers_slurm_cpus_per_task() -> None:
    import os

    from fetchshard.ranks import cpus_available

    assert cpus_available({"SLURM_CPUS_PER_TASK": "3"}) == 3
    assert cpus_available({}) == len(os.sched_getaffinity(0))
    with pytest.raises(RankError, match="SLURM_CPUS_PER_TASK"):
        cpus_available({"SLURM_CPUS_PER_TASK": "many"})
