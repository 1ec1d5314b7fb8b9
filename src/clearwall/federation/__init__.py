"""Federation: following other installations' public logs (a registry's) and adopting their orders.

- ``registry``: fetch a registry's checkpoint, entries and rule files over HTTP
  (C2SP tlog-tiles) and verify them against what was verified before;
- ``records``: what the store keeps of each mirrored registry;
- ``adopt``: a registry's order versions and ends as adoptions and withdrawals on this
  installation's own log, each one transaction with its entry;
- ``sync``: one pass over a registry (``clearwall mirror sync``, and the ``mirrors`` job
  of ``clearwall serve``).
"""
