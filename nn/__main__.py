"""``python -m nn``: see :mod:`nn.cli`."""

import sys

from nn.cli import main

sys.exit(main())
