"""`python -m tracehub` is the `tracehub` command."""

import sys

from tracehub.cli import main

sys.exit(main())
