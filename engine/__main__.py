"""`python -m engine` is the `synesthesia` command."""

import sys

from engine.cli import main

sys.exit(main())
