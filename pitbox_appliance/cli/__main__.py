"""``python -m pitbox_appliance.cli``: the ``pitbox`` command."""

import sys

from pitbox_appliance.cli import main

sys.exit(main())
