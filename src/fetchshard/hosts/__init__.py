"""Per-host politeness on one rank: the scheduler, its host slots, buckets and host health."""
