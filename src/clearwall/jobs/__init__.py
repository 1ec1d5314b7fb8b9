"""Scheduled upkeep of the policy: jobs that run beside the gateway, in every configuration.

Each job is a function of ``Jobs`` (one store, its log, the config) returning a line
saying what it did:

- ``expire``: orders past their sunset are marked expired, each with an
  ``order-expired`` entry on the public log (the matcher already stops enforcing an
  order at its ``expires`` time; the log must say so too);
- ``refresh``: subscriptions whose interval has passed are fetched and their orders'
  rules made equal to the list (one amendment entry when anything changed);
- ``witnesses``: witnesses missing from the published checkpoint are asked again;
- ``mirrors``: every mirrored registry is synced (``clearwall.federation``), every
  ``[federation] interval`` seconds.

``clearwall serve`` keeps their schedule as long as it serves a store, with or without
the web app, and runs each batch due in a short-lived child process (``process``);
``clearwall jobs run`` runs them once.
"""

from __future__ import annotations
