import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=int(os.environ.get("UL4M4_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("UL4M4_HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (modules opt in with ``pytest.mark.usefixtures``).

    Tiny tensors and models: more threads only add OpenMP contention on a shared machine.
    """
    torch = pytest.importorskip("torch")
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
