"""Every environment variable fetchshard reads, named here and nowhere else.

Options: ``FETCHSHARD_<SECTION>_<KEY>`` (config.env_layer). An s3:// output's endpoint and
region. Launchers: the rank and world size (:data:`LAUNCHERS`, read by ranks.py), SLURM's CPU
count and step variables. The Hugging Face Hub's endpoint and token (hub/auth.py). Internal:
the ``--ranks`` launcher's marks on its children and the test-only crash hook.
"""

from __future__ import annotations

# Options: FETCHSHARD_FETCH_PER_HOST_RATE=5 is fetch.per_host_rate = 5.
OPTION_PREFIX = "FETCHSHARD_"
# The world size of a Kubernetes indexed job (FETCHSHARD_*, yet not an option).
WORLD_SIZE = "FETCHSHARD_WORLD_SIZE"
# An s3:// output's endpoint (http(s)://host:port of an S3-compatible store; unset: AWS) and
# region, like --s3-endpoint/--s3-region: ours, because pyarrow ignores AWS_ENDPOINT_URL and
# the two clients must agree (runfolder/objectstore.py). Not options of the run's config yet.
S3_ENDPOINT = "FETCHSHARD_S3_ENDPOINT"
S3_REGION = "FETCHSHARD_S3_REGION"
NOT_OPTIONS = frozenset({WORLD_SIZE, S3_ENDPOINT, S3_REGION})

# (rank variable, size variables in order of preference, launcher name)
LAUNCHERS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("SLURM_PROCID", ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"), "SLURM"),
    ("OMPI_COMM_WORLD_RANK", ("OMPI_COMM_WORLD_SIZE",), "Open MPI"),
    ("PMI_RANK", ("PMI_SIZE",), "PMI"),
    ("PMIX_RANK", ("PMIX_SIZE",), "PMIx"),
    ("RANK", ("WORLD_SIZE",), "torchrun"),
    ("JOB_COMPLETION_INDEX", (WORLD_SIZE,), "Kubernetes indexed job"),
)
SLURM_RANK = "SLURM_PROCID"
SLURM_JOB_ID = "SLURM_JOB_ID"
SLURM_STEP_ID = "SLURM_STEP_ID"
SLURM_NTASKS = "SLURM_NTASKS"
SLURM_CPUS_PER_TASK = "SLURM_CPUS_PER_TASK"

# Set by ``--ranks`` on its children: "1" marks a child (no progress bar of its own, pid in
# log lines); the overrides of the launcher's command line, as JSON, are the child's own.
CHILD = "_FETCHSHARD_CHILD"
CHILD_OVERRIDES = "_FETCHSHARD_OVERRIDES"
# The launcher's command line (or library call) as JSON, which each child records as its own.
CHILD_COMMAND = "_FETCHSHARD_COMMAND"
LAUNCHER_PID = "_FETCHSHARD_LAUNCHER_PID"  # a child ends when this process does
CPU_SHARE = "_FETCHSHARD_CPUS"  # a child's share of its launcher's CPUs (its image workers)
# A child's stderr log level when its launcher draws the job's bar (its log file keeps all)
CHILD_STDERR_LEVEL = "_FETCHSHARD_CHILD_STDERR_LEVEL"

# Test hook: crash at a named point of the commit protocol (faults.py).
FAULT = "_FETCHSHARD_FAULT"

# The Hugging Face Hub (hub/auth.py), read as huggingface_hub reads them: the endpoint, the
# token (HF_TOKEN, then the legacy name, then the token file under HF_HOME) and the switch
# that keeps a token found implicitly from being sent.
HF_ENDPOINT = "HF_ENDPOINT"
HF_TOKEN = "HF_TOKEN"
HF_TOKEN_LEGACY = "HUGGING_FACE_HUB_TOKEN"
HF_TOKEN_PATH = "HF_TOKEN_PATH"
HF_HOME = "HF_HOME"
XDG_CACHE_HOME = "XDG_CACHE_HOME"
HF_HUB_DISABLE_IMPLICIT_TOKEN = "HF_HUB_DISABLE_IMPLICIT_TOKEN"
