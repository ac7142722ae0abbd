"""Event-driven simulation of program files under a cost model.

    from schedc.simulate import simulate, figures, load_costs
    sim = simulate(manifest, programs, load_costs("costs.json"), steps=4)
    print(render(figures(sim)))
"""

from schedc.simulate.costs import CostModel, CostsError, load_costs, unit_costs
from schedc.simulate.engine import BlockedAt, Deadlock, Timeline
from schedc.simulate.metrics import Figures, figures
from schedc.simulate.report import render, render_comparison
from schedc.simulate.run import Simulation, simulate

__all__ = [
    "BlockedAt", "CostModel", "CostsError", "Deadlock", "Figures", "Simulation", "Timeline",
    "figures", "load_costs", "render", "render_comparison", "simulate", "unit_costs",
]
