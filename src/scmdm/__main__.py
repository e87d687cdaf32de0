"""``python -m scmdm ...`` is the ``scmdm`` command; torchrun starts it as ``torchrun ... -m scmdm train ...``."""

import sys

from scmdm.cli import main

if __name__ == "__main__":
    sys.exit(main())
