"""The plan step (``fetchshard plan``): each rank reads 1/W of the input and writes it sorted by
host and key (step.py, slicefiles.py); each rank of ``fetchshard run`` then derives the host
assignment from every slice's host counts and reads only its own runs (reader.py)."""
