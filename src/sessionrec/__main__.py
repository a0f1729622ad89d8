"""``python -m sessionrec``: the same as the ``sessionrec`` command."""

from sessionrec.cli import main

main()
