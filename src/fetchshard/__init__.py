"""fetchshard: turn URL lists of any size into Parquet datasets."""

__version__ = "0.1.0"
