"""Workloads larger than one call: batched execution, progress, and the row cache.

Holds ``plan`` (rows, batches, the output writer, failures; no I/O),
``options`` (the batched-run defaults and their check, which the clients'
signatures need without loading the plan), ``drivers`` (worker threads for
``Client``, tasks for ``AsyncClient`` under asyncio), ``drivers_anyio`` (the same under trio), ``progress`` (a tqdm bar, a
callable or a status line), ``row_cache`` (:class:`RowCache`, one entry per
input row; no I/O), and coalescing: ``coalesce`` (:class:`Coalesce`, which
concurrent calls merge, stacking and splitting their rows; no I/O) with its
drivers ``coalesce_threads`` (``Client``) and ``coalesce_tasks``
(``AsyncClient``). The drivers call back into the client with plain
callables; nothing here imports a client.

A new workload goes here, as a sans-I/O plan plus drivers that a client method
calls.

May import: ``_http``, ``_wire``, ``_exceptions``, numpy, anyio, the standard
library, and (optional) tqdm.
"""
