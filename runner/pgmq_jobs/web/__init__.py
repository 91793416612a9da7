"""The web faces of pgmq-jobs, ASGI apps on Starlette served by uvicorn: the dashboard
(:mod:`pgmq_jobs.web.dashboard`) and the HTTP invoker (:mod:`pgmq_jobs.web.invoker`)."""
