"""``python -m wsload.target``: run the reference target."""

from wsload.target.cli import main

raise SystemExit(main())
