import sys

from fraudvae.cli import main

sys.exit(main())
