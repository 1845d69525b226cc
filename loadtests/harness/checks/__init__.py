"""Live invariant checks against a running licensing service.

Each check makes its own licenses (signed checkouts through
:mod:`loadtests.harness.provision`, emails unique to this run, so checks
can run again against the same service), drives the public API, and ends
in one :class:`~loadtests.harness.model.CheckResult`:

- ``cache_tiers``: the cache hint at every tier boundary, body and header;
- ``heartbeat_expiry``: a session lives exactly 120 s after its last heartbeat;
- ``conflict_takeover``: one alive session per license, takeover kicks;
- ``no_grace``: a failed payment suspends at once, a paid invoice restores at once;
- ``webhook_idempotency``: a duplicate-heavy, shuffled storm applies each event once
  and ends every license (and its emails) where the fake Stripe's oracle says.

One module per check, named for it; :mod:`.target` is the client they share,
:mod:`.invoices` the billing events two of them send, :mod:`.runner` runs them.

Checks run one after the other (two of them move the service's clock),
each bounded in time. A load may run meanwhile: checks never share a
license with it, and they judge time by the service's own answers
(``timestamp``), not by how far they asked the clock to move.
"""
