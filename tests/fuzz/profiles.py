"""How long the fuzzers run: a bounded number of examples in CI, many more under ``make fuzz``.

``make fuzz`` loads this module as a plugin (``-p tests.fuzz.profiles``) and selects the long
profile with Hypothesis's own ``--hypothesis-profile=jobtrail-fuzz-long``; tests decorated with
``fuzz_settings(n)`` then run the profile's examples instead of ``n``.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

LONG_PROFILE = "jobtrail-fuzz-long"
LONG_EXAMPLES = 1_000

settings.register_profile(LONG_PROFILE, max_examples=LONG_EXAMPLES, deadline=None)


def fuzz_settings(ci_examples: int) -> settings:
    """No deadline (machines here are slow and shared); ``ci_examples`` unless the long profile is
    loaded. Function-scoped fixtures (servers, emulator-backed clients) are meant to be shared by
    the examples of one test, which compare Firestore before and after each request."""
    examples = settings.default.max_examples
    return settings(
        max_examples=examples if examples >= LONG_EXAMPLES else ci_examples,
        deadline=None,
        # This Hypothesis prints blank argument values; the blob reproduces the failure exactly.
        print_blob=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )
