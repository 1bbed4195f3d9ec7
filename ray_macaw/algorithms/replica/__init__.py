"""What an inner-loop replica process imports: the meta-gradient computer and the replica actor.

Outside `algorithms/macaw/` on purpose: that package's `__init__` imports the RLlib Algorithm
(configs learn their algorithm class from it), and a replica that imported RLlib would spend
seconds of its start on code it never runs (`tests/test_replicas.py` checks that it does not).
"""
