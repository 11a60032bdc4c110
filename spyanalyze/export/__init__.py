"""Exporters: one module per output format, each with ``write(recording, out, **opts)``
(``flamegraph`` has two: ``write_html`` and ``write_svg``; ``parquet`` writes a dataset directory,
and needs the ``fleet`` extra only when used).

``FORMATS`` maps a format name to its writer, for the CLI's ``--format``.
"""

from spyanalyze.export import collapsed, flamegraph, parquet, speedscope

FORMATS = {"collapsed": collapsed.write, "speedscope": speedscope.write,
           "html": flamegraph.write_html, "svg": flamegraph.write_svg,
           "parquet": parquet.write}
