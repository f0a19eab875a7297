"""Several replicas of one model behind one client: routing, and the I/O around it.

Holds ``routing`` (the :class:`ReplicaSet`: which replica an attempt goes to,
ejections and back-off; no I/O) and ``attempts`` (one call's attempts over a
replica set, and the background probes; it drives a client's transport through
the small protocols it declares, never by importing a client).

May import: ``_http``, ``_observe``, ``_exceptions``, the standard library.
"""
