import sys

from llmref.cli import main

sys.exit(main())
