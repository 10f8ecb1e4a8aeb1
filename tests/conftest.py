import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

from bench import jaxcache  # noqa: E402

jaxcache.enable()


@pytest.fixture(scope="session", autouse=True)
def minari_root(tmp_path_factory):
    """Every test writes datasets (and behaviour agents) into a private folder."""
    root = tmp_path_factory.mktemp("minari") / "datasets"
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    yield root
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old
