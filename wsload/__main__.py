"""``python -m wsload``: the ``wsload`` command."""

from wsload.cli import main

raise SystemExit(main())
