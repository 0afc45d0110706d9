"""``python -m cadenza.frontend.cli``: the same as the ``cadenza`` command."""

import sys

from cadenza.frontend.cli import main

sys.exit(main())
