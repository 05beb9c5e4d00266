"""eoslib: full-batch curvature, solvers and alignment measures for the edge-of-stability reconstruction."""
__version__ = "0.1.0"
