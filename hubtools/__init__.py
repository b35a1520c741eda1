"""Tools that work on the hub but are not part of its runtime.

The evaluation (``hub eval``), the recorded poses it replays, the PyPI fall detectors it
compares against, the demo footage (fetched with ``apt-get download``) and the MQTT load
generator used by the benchmarks and tests. Nothing under ``hub/`` (except the demo
command) or ``edge/`` imports this package.
"""
