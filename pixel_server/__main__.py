import sys

from pixel_server.cli import main

sys.exit(main())
