"""`python -m hortus.cli.core`: the `hortus` command."""

import sys

from hortus.cli.core import main

sys.exit(main())
