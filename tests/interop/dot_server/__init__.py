"""A minimal django-oauth-toolkit authorization server for the interop tests.

``python -m tests.interop.dot_server.serve --port 0 --db PATH --grace SECONDS`` starts it; the
client credentials it creates are in :mod:`tests.interop.dot_server.clients`, which imports
nothing from Django, so that the tests can use them without Django being set up.
"""
