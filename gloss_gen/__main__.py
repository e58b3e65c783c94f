import sys

from gloss_gen.cli import main

sys.exit(main())
