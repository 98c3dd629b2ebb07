"""`python -m pec.cli`: the `pec` command."""

import sys

from pec.cli.main import main

sys.exit(main())
