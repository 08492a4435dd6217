"""The runtime: scheduler, worker processes and the API that reaches them.

Imports point down only: executor -> store. Nothing here knows of graphs.
"""
