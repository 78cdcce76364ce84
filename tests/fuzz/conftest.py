"""Hypothesis profiles for the fuzz tests (tests/fuzz/).

``ci`` (the default: ``make test``): a fixed seed (``derandomize``), a bounded number of examples
per test, no example database; about a minute for the whole folder on 2 cores. ``fuzz``
(``make fuzz``): many more examples, random seeds, failures kept in ``.hypothesis/`` (ignored by
git) so a rerun replays them first. Pick one with ``HYPOTHESIS_PROFILE=fuzz``.

Every failure a fuzzer found is kept as an ``@example`` on its test, so it is replayed in every
run whatever the profile.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.function_scoped_fixture])
settings.register_profile("ci", max_examples=40, derandomize=True, database=None,
                          print_blob=True, **_COMMON)
settings.register_profile("fuzz", max_examples=2000, print_blob=True, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
