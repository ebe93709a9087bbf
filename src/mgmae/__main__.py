from mgmae.cli import main

raise SystemExit(main())
