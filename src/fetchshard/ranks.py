"""Which rank this process is, and out of how many, from the launcher's environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from fetchshard.environment import (
    CPU_SHARE,
    LAUNCHERS,
    SLURM_CPUS_PER_TASK,
    SLURM_JOB_ID,
    SLURM_NTASKS,
    SLURM_STEP_ID,
)
from fetchshard.errors import RankError


@dataclass(frozen=True, slots=True)
class RankInfo:
    rank: int
    world_size: int
    source: str

    @property
    def describe(self) -> str:
        return f"rank {self.rank} of {self.world_size} (from {self.source})"


def _int(environ: Mapping[str, str], name: str) -> int:
    raw = environ[name]
    try:
        return int(raw)
    except ValueError as exc:
        raise RankError(f"{name}={raw!r} is not an integer") from exc


def detect_rank(
    environ: Mapping[str, str], *, rank: int | None = None, world_size: int | None = None
) -> RankInfo:
    """Explicit ``--rank/--world-size`` win; then the launchers; else rank 0 of 1."""
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise RankError("--rank and --world-size must be given together")
        return _checked(RankInfo(rank, world_size, "--rank/--world-size"))
    _guard_slurm_without_step(environ)
    for rank_var, size_vars, name in LAUNCHERS:
        if rank_var not in environ:
            continue
        size_var = next((v for v in size_vars if v in environ), None)
        if size_var is None:
            raise RankError(f"{rank_var} is set but none of {', '.join(size_vars)} is")
        info = RankInfo(_int(environ, rank_var), _int(environ, size_var), name)
        return _checked(info, f"{rank_var}/{size_var}")
    return RankInfo(0, 1, "default: single process")


def _guard_slurm_without_step(environ: Mapping[str, str]) -> None:
    """Inside an sbatch script without srun, SLURM_PROCID is 0 while SLURM_NTASKS is N.

    Trusting it would silently do 1/N of the work, so refuse.
    """
    if SLURM_JOB_ID not in environ or SLURM_STEP_ID in environ:
        return
    try:
        ntasks = int(environ.get(SLURM_NTASKS, "1"))
    except ValueError:
        return
    if ntasks > 1:
        raise RankError(
            f"SLURM_NTASKS={ntasks} but this process is not inside a job step: "
            "launch it with `srun fetchshard run ...` (or pass --rank/--world-size)"
        )


def _checked(info: RankInfo, names: str = "--rank/--world-size") -> RankInfo:
    if info.world_size < 1:
        raise RankError(f"world size must be at least 1 ({names} gave {info.world_size})")
    if not 0 <= info.rank < info.world_size:
        raise RankError(f"rank {info.rank} is outside 0..{info.world_size - 1} ({names})")
    return info


def cpus_available(environ: Mapping[str, str]) -> int:
    """CPUs this rank may use: SLURM_CPUS_PER_TASK, else its share of a ``--ranks``
    launcher's, else the affinity mask, else the count."""
    for name in (SLURM_CPUS_PER_TASK, CPU_SHARE):
        raw = environ.get(name)
        if raw:
            try:
                return max(1, int(raw))
            except ValueError as exc:
                raise RankError(f"{name}={raw!r} is not an integer") from exc
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)
