"""The compile's collector policy: paused, and on again for the fallback search."""

import gc

from schedc.compiler import COMPILE_GC_THRESHOLDS, collecting, compile_spec, few_collections
from schedc.presets import preset_spec


def test_few_collections_restores_the_thresholds():
    before = gc.get_threshold()
    with few_collections():
        assert gc.get_threshold() == COMPILE_GC_THRESHOLDS
    assert gc.get_threshold() == before


def test_few_collections_pause_stops_the_collector_and_restores_it():
    assert gc.isenabled()
    with few_collections(pause=True):
        assert not gc.isenabled()
    assert gc.isenabled()


def test_collecting_turns_the_collector_on_inside_a_paused_compile_and_off_again():
    with few_collections(pause=True):
        with collecting():
            assert gc.isenabled()
            assert gc.get_threshold() == COMPILE_GC_THRESHOLDS
        assert not gc.isenabled()
    assert gc.isenabled()


def test_collecting_leaves_a_running_collector_on():
    with collecting():
        assert gc.isenabled()
    assert gc.isenabled()


def test_compile_spec_restores_the_collector():
    before = gc.get_threshold()
    compile_spec(preset_spec("paci", stages=2, microbatches=4))
    assert gc.isenabled() and gc.get_threshold() == before
