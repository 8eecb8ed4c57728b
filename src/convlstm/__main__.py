"""``python -m convlstm``: the ``convlstm`` command line."""
import sys

from .cli import main

if __name__ == "__main__":  # not when a tool (a documentation builder) imports every submodule
    sys.exit(main())
