"""``python -m vgh_lib`` is the ``vgh`` command."""

from vgh_lib.driver.cli import main

raise SystemExit(main())
