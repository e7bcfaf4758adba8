"""The WSGI entry point for gunicorn: `gunicorn -k gevent ruleadmin.wsgi:app` (config from RULEADMIN_*)."""
from ruleadmin import create_app

app = create_app()
