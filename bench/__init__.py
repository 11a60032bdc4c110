"""The benchmarks, run from the repository root as ``.venv/bin/python -m bench.bench_NAME``.

``bench.common`` holds what several of them need (paths, interpreters, statistics, /proc
readers, starting and stopping targets); ``bench.peers`` the other profilers.  Results and the
commands that produced them are in docs/benchmarks.md.
"""
