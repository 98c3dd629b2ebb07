"""`python -m pec.presentation.cli`: the `pec` command."""

import sys

from pec.presentation.cli.main import main

sys.exit(main())
