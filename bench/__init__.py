"""pgmq-jobs benchmark suite (``make bench``): pgmq-jobs side by side with raw PGMQ and peers."""
