import sys

from egodistill.cli import main

sys.exit(main())
