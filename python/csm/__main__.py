"""`python -m csm ARGS`: the csm command-line tool this package carries (`python -m csm
node` starts a node; `csm` and `csmd` are also installed as commands)."""
import importlib.util
import os
import shutil
import sys


def _run(tool, args):
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", tool)
    path = here if os.access(here, os.X_OK) else shutil.which(tool)
    if path is None:
        sys.exit("csm: no %s program in this installation (%s): install the package with pip, or "
                 "build the project and put its build directory on PATH" % (tool, here))
    os.execv(path, [path] + args)


def main():
    """The csm tool: csm node, ls, stat, rm, info, nodes, put, get …"""
    args = sys.argv[1:]
    if args[:1] == ["node"]:
        _run("csmd", args[1:])  # the same daemon; csmd does not need pyarrow
    if importlib.util.find_spec("pyarrow") is None:
        sys.exit("csm: the csm tool links the Arrow C++ libraries of pyarrow, which is not installed: "
                 "pip install 'pyarrow==26.0.1' (`python -m csm node` and csmd run without it)")
    _run("csm", args)


def csmd():
    """The node daemon."""
    _run("csmd", sys.argv[1:])


if __name__ == "__main__":
    main()
