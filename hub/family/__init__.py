"""Family first: a life-safety incident about a care subject tells the subject's
emergency contacts in order, each with a window to answer through a one-time link
(``cascade``: the pure state machine; ``links``: the signed tokens; ``store``:
PostgreSQL; ``worker``: the alert worker's thread)."""
