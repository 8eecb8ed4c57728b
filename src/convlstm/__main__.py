"""``python -m convlstm``: the ``convlstm`` command line."""
import sys

from .cli import main

sys.exit(main())
