"""Makes the helpers shared by several test folders (tests/launching.py,
tests/tiers.py) importable from every test module, and keeps the nightly tier
(`@pytest.mark.nightly`, tests/tiers.py) out of the default run: without
SCHEDC_NIGHTLY=1 those tests are deselected, and the header says how many."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiers import NIGHTLY  # noqa: E402

_DESELECTED: list[int] = [0]


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "nightly: a long job of the nightly tier, run only "
                            "with SCHEDC_NIGHTLY=1 (make test-all); see tests/tiers.py")


def pytest_collection_modifyitems(config, items) -> None:
    if NIGHTLY:
        return
    nightly = [item for item in items if item.get_closest_marker("nightly")]
    if nightly:
        config.hook.pytest_deselected(items=nightly)
        items[:] = [item for item in items if not item.get_closest_marker("nightly")]
    _DESELECTED[0] = len(nightly)


def pytest_report_collectionfinish(config, start_path, items) -> str:
    if NIGHTLY:
        return "tier: nightly (SCHEDC_NIGHTLY=1): every test"
    return (f"tier: CI ({_DESELECTED[0]} nightly tests deselected; SCHEDC_NIGHTLY=1 or "
            "make test-all runs them)")
