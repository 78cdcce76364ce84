"""``python -m pspnet_core.study``: the ``pspnet-study`` command."""

import sys

from pspnet_core.study.cli import main

if __name__ == "__main__":
    sys.exit(main())
