import os
import sys

# XLA's C++ logs (e.g. the compilation cache's CPU-feature notes) are noise for a CLI user.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench import jaxcache  # noqa: E402  (imports no jax)

jaxcache.avoid_known_crash(sys.argv[1:])

from bench.cli import main  # noqa: E402

sys.exit(main())
