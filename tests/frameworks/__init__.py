"""What the framework tests (tests/test_frameworks.py) run inside Celery, RQ and gunicorn: the
calls made with a module-level session, the Celery application, the WSGI application, and a
helper that runs each framework's command and ends it."""
