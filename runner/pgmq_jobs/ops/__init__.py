"""Operations: install and upgrades (:mod:`~pgmq_jobs.ops.install`, releases in
:mod:`~pgmq_jobs.ops.versions`), the Supabase migrations (:mod:`~pgmq_jobs.ops.migrations`),
the embedded cluster and the dev cluster (:mod:`~pgmq_jobs.ops.cluster`,
:mod:`~pgmq_jobs.ops.dev`, :mod:`~pgmq_jobs.ops.container`), PL/Python
(:mod:`~pgmq_jobs.ops.plpython`) and where the SQL sources are (:mod:`~pgmq_jobs.ops.paths`)."""
