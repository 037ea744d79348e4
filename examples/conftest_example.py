"""Copy into your repository's conftest.py to run the reference suite on your own family."""

import pytest

from examples.my_models import family as my_family


@pytest.fixture(scope="session")
def model_family():
    return my_family
