import sys

from lrdsl.cli import main

sys.exit(main())
