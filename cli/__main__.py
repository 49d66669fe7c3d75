"""`python -m cli`: the `clarity` command line without the installed script."""

from cli import main

raise SystemExit(main())
