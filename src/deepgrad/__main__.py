import sys

from deepgrad.cli.main import main

sys.exit(main())
