"""Everything that talks to the outside world: one client per service, plus the shared
configuration, logging, HTTP session and command-line harness the two jobs run in."""
