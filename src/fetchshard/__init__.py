"""fetchshard: turn URL lists of any size into Parquet datasets.

From Python (``fetchshard.api``; every error a ``fetchshard.errors.FetchshardError``)::

    import fetchshard

    fetchshard.run("urls.txt", output="out")   # RunResult(complete, items, ok, failed, ...)
    fetchshard.merge("out")                    # MergeResult: out/merged
    fetchshard.report("out")                   # the Report that `report --json` prints

Nothing is imported until one of them is used, so ``import fetchshard`` stays instant. No
submodule shares their names (the commands' packages are ``merging/`` and ``reporting/``).
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fetchshard.api import MergeResult, PlanResult, RunResult, merge, plan, report, run

__version__ = "0.1.0"
__all__ = ["MergeResult", "PlanResult", "RunResult", "merge", "plan", "report", "run"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from fetchshard import api

        return getattr(api, name)
    raise AttributeError(f"module 'fetchshard' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
