"""The compiler: DAG nodes -> logical graph -> passes -> physical Plan.

Imports point down only: compiler -> executor -> store. The graph types are
plain frozen data (``ir.py``); every pass is a function from graph to graph in
its own module; ``plan.py`` holds the physical Plan that explain, visualize
and every backend read.
"""
