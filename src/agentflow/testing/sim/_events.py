"""Kinds of the events on the simulation's heap (small ints: the heap is the hot path)."""

EV_TICK = 0
EV_DELIVER = 1
EV_CLIENT = 2
EV_CLIENT_TIMEOUT = 3
EV_NEMESIS = 4
EV_RETIRE = 5
EV_WRITE = 6
EV_CAMPAIGN = 7
