"""Compiler passes: each a function ``graph -> graph`` in its own module.

Each module's docstring states the pass's legality rule. A pass never mutates
its input, and records its name in ``graph.graph["passes"]`` only when it
changed something.
"""
