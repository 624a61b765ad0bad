from affectfuse.cli import main

raise SystemExit(main())
