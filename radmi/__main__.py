import sys

from radmi.cli import main

sys.exit(main())
