"""pytest plugins that the drop-in runner loads into a dependency's own test run (``-p
swaps.NAME``, with ``benchmarks/dropin`` on ``PYTHONPATH``): :mod:`.outcomes` in every run;
:mod:`.harness` and one class swap (:mod:`.httpx_clients`, :mod:`.requests_session`) in the
swapped runs. They import nothing of the benchmarks."""
