"""``python -m server`` (with the tests folder on the path): run the command line."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
