"""csm: Python data in the global heap — numpy arrays, bytes, Arrow tables and any
picklable object, shared across processes and nodes with no copy (docs/python.md).

    import csm, numpy as np
    csm.put("weights", np.ones((1000, 1000)))   # copied into the heap once
    w = csm.get("weights")                      # any process, any node: a read-only view

`python -m csm node` starts a node (the csm tool this package carries).
"""
from ._csm import (  # noqa: F401 - the package's API
    Client,
    Error,
    connect,
    delete,
    get,
    info,
    ls,
    nodes,
    put,
    stat,
)


def _tables():
    """csm._csm_arrow, the extension for Arrow tables and DataFrames: loaded on first use,
    so the rest of csm works without pyarrow."""
    try:
        from . import _csm_arrow
    except ImportError as e:
        raise ImportError("csm: Arrow tables and DataFrames need pyarrow 26.0.1, the Arrow build csm "
                          "was built with: pip install 'pyarrow==26.0.1' (%s)" % e) from e
    return _csm_arrow


def put_table(key, table):
    """Publishes a table under `key` (its buffers copied into the heap once). Returns
    {descriptor_bytes, buffers_in_place, buffers_copied, bytes_copied}."""
    return _tables().put_table(key, table)


def append_table(key, table):
    """Appends a table as the next part of the table under `key` (docs/arrow.md)."""
    return _tables().append_table(key, table)


def get_table(key, timeout=0.0, fetch="node"):
    """The table under `key` as a pyarrow.Table whose buffers are the heap's (no copy),
    waiting up to `timeout` seconds for it. KeyError if there is none, TypeError if the
    key holds something else, ConnectionError if its node is gone. fetch: as csm.get's
    ('on-demand': returns once the table's descriptor is here; a column's pages move as
    it is read)."""
    return _tables().get_table(key, timeout, fetch)


__all__ = ["Client", "Error", "append_table", "connect", "delete", "get", "get_table", "info", "ls",
           "nodes", "put", "put_table", "stat"]
