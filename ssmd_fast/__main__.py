import sys

from ssmd_fast.cli import main

sys.exit(main())
