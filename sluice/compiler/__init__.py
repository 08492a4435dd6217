"""The compiler: DAG nodes -> logical graph -> passes -> physical Plan.

Imports point down only: compiler -> executor -> store. The graph types are
plain frozen data (``ir.py``); every pass is a function from graph to graph in
its own module; ``plan.py`` holds the physical Plan that explain, visualize
and every backend read. ``runner.py`` is the one walker of Plans, with
per-stage hooks; ``run.py`` is how a stage becomes a task, an actor or a call;
``plan_run.py`` keeps a Plan's run state outside the immutable Plan.
"""
