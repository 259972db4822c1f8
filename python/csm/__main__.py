"""`python -m csm ARGS`: the csm command-line tool this package carries (`python -m csm
node` starts a node; `csm` and `csmd` are also installed as commands)."""
import os
import shutil
import sys


def _run(tool):
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", tool)
    path = here if os.access(here, os.X_OK) else shutil.which(tool)
    if path is None:
        sys.exit("csm: no %s program in this installation (%s): install the package with pip, or "
                 "build the project and put its build directory on PATH" % (tool, here))
    os.execv(path, [path] + sys.argv[1:])


def main():
    """The csm tool: csm node, ls, stat, rm, info, nodes, put, get …"""
    _run("csm")


def csmd():
    """The node daemon."""
    _run("csmd")


if __name__ == "__main__":
    main()
