import sys

from mexjax.cli import main

sys.exit(main())
