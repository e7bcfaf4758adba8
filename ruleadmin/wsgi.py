"""The WSGI entry point for gunicorn: `gunicorn -k ruleadmin.gunicorn_worker.GeventWorker ruleadmin.wsgi:app` (or
`-k gevent`, as `ruleadmin serve` runs it but for the settings lookups; config from RULEADMIN_*)."""
from ruleadmin import create_app

app = create_app()
