"""The drop-in proof: httpx's and requests' own test suites, run once as they come and once with
their client classes swapped for ours, and the failures compared.

``python -m benchmarks.dropin`` (about 2 minutes on 2 cores, most of it requests' suite waiting on
its timeouts) builds a virtualenv per suite in a work folder, installs this checkout and the
suite's test tools at pinned versions, downloads the dependency's sdist from PyPI (its tests come
with it) and runs them twice: stock, and with a pytest plugin of :mod:`benchmarks.dropin.swaps`
that swaps ``httpx.Client`` / ``httpx.AsyncClient`` or ``requests.Session`` for subclasses of ours
whose prefix no test URL matches. It prints both runs' failures and the new ones, and exits 1 if
a test fails only with our classes (a deviation that :mod:`benchmarks.dropin.suites` lists as by
design aside). ``--page docs/reports/dropin.md`` rewrites the report's table.
"""
