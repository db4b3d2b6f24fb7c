"""Long-running loops inside Celery workers: shard replicas and the query encoder over RPC."""
