"""PL/Python support for pgmq-jobs on self-hosted PostgreSQL.

Plain, importable Python (standard library, plus the server's ``jsonschema`` for
:mod:`jsonschema_check`). ``pgmq-jobs install --with-plpython`` embeds each module's source in
``language plpython3u`` functions of schema ``pgmq_jobs_plpy`` (see
``runner/pgmq_jobs/plpython.py``); the tests call the same functions directly. The modules do
not import each other, so each one can be loaded on its own inside the database.
"""
