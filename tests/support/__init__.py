"""Helpers the tests share, apart from the tests themselves: ``front_ends`` (one client interface
over every front end), ``front_end_checks`` (checks that the bearer and DPoP front-end suites both
run), ``hostile`` (loopback servers that play an attacker), ``handlers`` (the base of the loopback
servers' request handlers), ``recording`` (a token endpoint that records what it is sent),
``corporate`` (a private CA and a forward proxy), ``dpop`` (the ``ath`` oracle and a DPoP login),
``locks`` (a store's lock held by another thread), ``processes`` (child processes and storms),
``storms`` (a storm through expiries, its figures and the store it shares), ``redis_servers`` (real
redis-server processes), ``redis_jobs`` (the STORM job for processes that share only Redis),
``scenarios`` (the rows of the reliability report and their tests) and ``reliability`` (the runs
that write that report: ``python -m tests.support.reliability``)."""
