import sys

from workerlib.entry import main

sys.exit(main())
