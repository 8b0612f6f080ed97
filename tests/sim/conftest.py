"""Make the plant-test helpers (``sim_helpers``) importable from the tests in this folder."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
