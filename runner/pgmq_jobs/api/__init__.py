"""The one binding of pgmq-jobs' SQL API.

- :mod:`pgmq_jobs.api.calls`: every statement the Python side sends, each built once as a
  :class:`~pgmq_jobs.api.calls.Call` (statement, parameters, how to read the rows);
- :mod:`pgmq_jobs.api.sync` (``pgmq_jobs.client``): the calls on a ``psycopg.Connection``;
- :mod:`pgmq_jobs.api.aio` (``pgmq_jobs.aio``): the same calls, awaitable, on a
  ``psycopg.AsyncConnection``;
- :mod:`pgmq_jobs.api.types`: argument and result types, and :class:`QueueSettings`.
"""
