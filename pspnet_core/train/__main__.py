"""``python -m pspnet_core.train``: the ``pspnet-train`` command."""

import sys

from pspnet_core.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
