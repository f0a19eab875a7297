"""Several replicas of one model behind one client: routing, and the I/O around it.

Holds ``routing`` (the :class:`ReplicaSet`: which replica an attempt goes to,
ejections and back-off; no I/O), ``balance`` (the rule that picks among the
replicas in rotation: fewest in flight weighted by latency estimates; no I/O),
``hedging`` (the :class:`Hedge` option and its decisions: the delay, the p95,
the budget; no I/O), ``options`` (what a client checks when it is made,
``eject_backoff=``, ``balance=`` and ``hedge=``, without loading routing or
hedging), ``attempts`` (one call's attempts over a replica set, and the
background probes; it drives a client's transport through the small protocols
it declares, never by importing a client) and ``hedged`` (one attempt raced
against a hedge on another replica).

May import: ``_http``, ``_observe``, ``_exceptions``, the standard library.
"""
