"""The Raft consensus core (being built; see issue 3)."""
