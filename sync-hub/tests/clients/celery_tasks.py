"""Tasks for scripting.py's celery section; the worker imports this module. Broker and
result backend: the server on CELERY_PORT."""
import os

import redis
from celery import Celery

PORT = int(os.environ["CELERY_PORT"])
URL = f"redis://127.0.0.1:{PORT}/0"
app = Celery("celery_tasks", broker=URL, backend=URL)
app.conf.update(broker_connection_retry_on_startup=True, task_acks_late=True, result_expires=600)


@app.task
def add(x, y):
    return x + y


@app.task
def tsum(values):
    return sum(values)


@app.task(bind=True, max_retries=5, default_retry_delay=0.05)
def flaky(self, key):
    n = redis.Redis(host="127.0.0.1", port=PORT).incr(key)
    if n < 3:
        raise self.retry(exc=RuntimeError("try again"))
    return n
