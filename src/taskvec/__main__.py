"""`python -m taskvec` (also what torchrun -m taskvec runs)."""

from taskvec.cli import main

raise SystemExit(main())
