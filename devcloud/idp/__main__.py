"""``python -m devcloud.idp``."""

import sys

from devcloud.idp.cli import main

sys.exit(main())
