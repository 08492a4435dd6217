"""Cluster mode: a gRPC head, node daemons, and Arrow Flight between node stores.

``sluice start --head`` / ``sluice start --address HOST:PORT`` run the daemons
(``cli.py``); ``sluice.init(address="sluice://HOST:PORT")`` connects a driver
(``client.py``). The head (``head.py``) runs the local runtime's scheduler with
workers spread over nodes (``placement.py``, ``directory.py``); each node
(``node.py``) relays its workers over one gRPC stream (``relay.py``) and serves
its store over Arrow Flight (``sluice/store/transfer.py``).
"""
