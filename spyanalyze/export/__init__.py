"""Exporters: one module per output format, each with ``write(recording, out, **opts)``.

``FORMATS`` maps a format name to its module, for the CLI's ``--format``.
"""

from spyanalyze.export import collapsed, speedscope

FORMATS = {"collapsed": collapsed, "speedscope": speedscope}
