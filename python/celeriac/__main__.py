"""``python -m celeriac`` is ``python -m celeriac.runner``."""

import sys

from .runner import main

sys.exit(main())
