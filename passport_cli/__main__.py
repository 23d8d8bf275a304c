from passport_cli.main import main

raise SystemExit(main())
