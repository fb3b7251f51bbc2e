"""`python -m vaeok` == `vaeok`."""

import sys

from vaeok.cli import main

sys.exit(main())
