"""``python -m scripts.refdocs``: see :mod:`scripts.refdocs`."""

from . import main

raise SystemExit(main())
