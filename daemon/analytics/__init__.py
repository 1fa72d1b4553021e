"""Heavy analytics: PIN, Glosten–Milgrom spread, the makers' bimatrix game (Lemke–Howson),
GARCH(1,1) maximum likelihood and offline PELT change points, and `heavy` — the one
interface through which the daemon runs any of them off the event loop.

Nothing in this package may run on the event loop except `heavy.LocalHeavyAnalytics`'s
bookkeeping (and `glosten_milgrom.gm_spread`, which is O(1) arithmetic). The numerical
modules are pure: no I/O, no clock, no asyncio. They import only numpy/scipy and the
lower layers' event types; never features, strategy, risk, gateway or anything above.
"""
