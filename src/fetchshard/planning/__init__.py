"""Planning: which rows of the input each rank fetches, and what guards a folder.

- ``fingerprint``: what a run and a plan are made for, the one place two fingerprints are
  compared (:func:`fingerprint.difference`), and a rank's claim on a run or plan folder;
- ``placement``: the rules behind one :class:`placement.Placement` (the counted
  ``assignment``, or :class:`placement.FixedSpread`) and a rank's rate shares
  (:class:`placement.RankShares`); ``assignment``: the counted host assignment (pure);
- ``select``: the row selector (:class:`select.Selector`): one rank's rows of a batch,
  normalized and hashed (``fetchshard.urls``), vectorized where the URL is canonical;
- ``rank``: planning one rank of ``fetchshard run`` into its ledger (the counting pass,
  then the selector over the input, or its runs of a plan step's slices);
- the plan step (``fetchshard plan``): ``step`` (one plan rank's slice), ``slicefiles`` (its
  files) and ``planfile`` (a run rank reading a complete plan: its assignment and runs).

The step uses ``select`` and ``fingerprint``, never ``rank``; nothing imports this package's
``__init__`` but for :class:`Interrupted`.
"""


class Interrupted(Exception):
    """Planning (a rank's, or a plan step's) was stopped by a signal; what it wrote is
    consistent: rerun to go on."""
