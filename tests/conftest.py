"""Settings every test starts from.

``SCGAN_COMPILE=off``: compiling the forward costs 20-30 s per batch size on this 2-core
CPU, far more than any test's budget; set before any fixture builds a ``Settings()``.
The tests that compile for real say so (tests/model/test_compiled.py,
tests/service/test_service_compiled_slow.py).
"""

from __future__ import annotations

import os

os.environ["SCGAN_COMPILE"] = "off"
