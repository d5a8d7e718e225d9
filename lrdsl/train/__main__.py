import sys

from lrdsl.train.app import main

sys.exit(main())
