"""Execute a notebook in place (or into --out), as CI and the README do.

    python scripts/run_notebook.py notebooks/mauve_comparison.ipynb            # full run
    EPSVEC_NOTEBOOK_QUICK=1 python scripts/run_notebook.py NB --out /tmp/x.ipynb  # tiny settings
"""

import argparse
import os
import time

import nbformat
from nbclient import NotebookClient


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("notebook")
    parser.add_argument("--out", help="where to write the executed notebook (default: in place)")
    parser.add_argument("--timeout", type=int, default=6 * 3600, help="seconds per cell")
    args = parser.parse_args()
    nb = nbformat.read(args.notebook, as_version=4)
    start = time.time()
    here = os.path.dirname(os.path.abspath(args.notebook))
    NotebookClient(nb, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": here}}).execute()
    nbformat.write(nb, args.out or args.notebook)
    print(f"executed {args.notebook} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
