"""``python -m cqsm``: the same as the ``cqsm`` command."""

from cqsm.cli import main

raise SystemExit(main())
