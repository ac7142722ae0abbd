"""`python -m schedc` runs the command line."""

import sys

from schedc.cli import main

sys.exit(main())
