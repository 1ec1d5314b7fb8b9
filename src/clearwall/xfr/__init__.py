"""The RPZ primary: the policy served to resolver fleets by zone transfer.

``zones`` states a jurisdiction's policy as response policy zones, one per basis;
``feed`` follows the store's log; ``history`` keeps the versions IXFR needs; ``messages``
writes transfers as DNS messages (with TSIG); ``server`` answers SOA, AXFR and IXFR;
``notify`` tells secondaries about a new serial; ``primary`` runs them together. See
``docs/xfr.md``.
"""
