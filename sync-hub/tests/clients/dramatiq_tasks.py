"""Actors for scripting.py's dramatiq section: its worker process imports this module.
The broker's port comes from DQ_PORT."""
import os
import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

PORT = int(os.environ["DQ_PORT"])
broker = RedisBroker(host="127.0.0.1", port=PORT)
broker.add_middleware(Results(backend=RedisBackend(client=redis.Redis(host="127.0.0.1", port=PORT))))
dramatiq.set_broker(broker)

@dramatiq.actor(store_results=True, max_retries=3, min_backoff=10, max_backoff=50)
def add(x, y):
    return x + y

@dramatiq.actor(store_results=True, max_retries=3, min_backoff=10, max_backoff=50)
def flaky(key):
    r = redis.Redis(host="127.0.0.1", port=PORT)
    n = r.incr(key)
    if n < 3:
        raise RuntimeError("try again")
    return n
