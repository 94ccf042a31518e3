# SPDX-License-Identifier: Apache-2.0
"""``python -m lcengine`` (and ``torchrun -m lcengine optimize ...``): the ``lcengine`` command."""

import sys

from lcengine.cli import main

if __name__ == "__main__":
    sys.exit(main())
