"""Makes the helpers shared by several test folders (tests/launching.py)
importable from every test module."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
