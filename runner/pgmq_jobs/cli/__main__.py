"""``python -m pgmq_jobs.cli``: the ``pgmq-jobs`` command."""

import sys

from pgmq_jobs.cli.main import main

sys.exit(main())
