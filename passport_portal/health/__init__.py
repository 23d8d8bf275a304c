"""Health, readiness and Prometheus metrics for load balancers and monitoring.

``/healthz`` says the process answers; ``/readyz`` checks what a request needs (``checks.py``);
``/metrics`` reads the database on each scrape (``metrics.py``), so every web process gives the
same answer. ``middleware.py`` answers the three before the host check and the https redirect.
"""
