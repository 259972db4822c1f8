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
    append_table,
    connect,
    delete,
    get,
    get_table,
    info,
    ls,
    nodes,
    put,
    put_table,
    stat,
)

__all__ = ["Client", "Error", "append_table", "connect", "delete", "get", "get_table", "info", "ls",
           "nodes", "put", "put_table", "stat"]
