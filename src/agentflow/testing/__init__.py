"""Test machinery that proves the Raft core: never imported by production code.

Owns the deterministic cluster simulator (`agentflow.testing.sim`, entry point
`python -m agentflow.testing.sim`) and the linearizability checker for the key-value model
that the simulated clients drive (`agentflow.testing.linearizability`). It must not be
imported by `agentflow.raft`, `agentflow.cluster` or anything a master runs: it exists to
break those, seed by seed.
"""
