"""The project's release: the recorder, the codec and the analyser ship together as one
distribution, so they share one version, kept here where both sides can import it."""

__version__ = "0.1.0"
