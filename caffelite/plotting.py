"""matplotlib, the optional plotting dependency (``pip install -e '.[plot]'``), loaded on demand
with the non-interactive Agg backend (PNG files, no display needed)."""

from .errors import CaffeliteError

INSTALL_HINT = ("matplotlib is not installed; plotting needs the [plot] extra: "
                "pip install -e '.[plot]'  (or: pip install matplotlib==3.11.2)")


def pyplot():
    """-> matplotlib.pyplot on the Agg backend; a CaffeliteError naming the extra if missing."""
    try:
        import matplotlib
    except ImportError:
        raise CaffeliteError(INSTALL_HINT) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
