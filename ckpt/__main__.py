"""``python -m ckpt``: the ``ckpt`` command line (see ``ckpt.cli``)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
