"""How long one property-test example may take: the one home of that figure for every test file.

The bound is there to catch a parser or pattern that backtracks or goes quadratic on hostile input, which takes
seconds to minutes on the 60-300 KB examples. Linear code takes a few milliseconds, up to ~100 ms on the largest; the
bound leaves a wide margin for a loaded 2-core machine, so it never fails for load alone (speed is measured by
`make bench`, not here)."""

from hypothesis import settings

EXAMPLE_DEADLINE_MS = 2000


# Any text or bytes thrown at a parser: many examples, each under the same bound.
CRASH_HUNT = settings(max_examples=300, deadline=EXAMPLE_DEADLINE_MS)
