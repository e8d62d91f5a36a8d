import sys

from workerlib.cli import main

sys.exit(main())
