"""`schedc tune`: pick the schedule for a cost profile, under memory and staleness caps.

    from schedc.tune import Query, load_measured, tune
    result = tune(Query(ranks=4, batch=32), load_measured("costs.json", 4), ["1f1b", "paci"])
    print(result.best.candidate.label())

space.py enumerates candidates, profile.py (measured) and models.py (built-in
estimate) give each its costs, evaluate.py compiles (cache.py), caps and
simulates one, search.py ranks them all, table.py / plot.py / output.py show
and write the result. docs/tune.md is the reference.
"""

from schedc.tune.evaluate import Query, Row
from schedc.tune.models import estimate
from schedc.tune.profile import Profile, load_measured
from schedc.tune.search import Result, tune
from schedc.tune.space import Candidate, enumerate_space

__all__ = ["Candidate", "Profile", "Query", "Result", "Row", "enumerate_space", "estimate",
           "load_measured", "tune"]
