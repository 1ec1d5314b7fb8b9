"""clearwall's DNS gateway: a forwarding, caching, policy-enforcing DNS server.

``server`` holds the listeners (the only socket code), ``handlers`` the chain in its
declared order, ``wire`` the hot-path codec and ``workers`` the multi-process runner,
which starts the control plane (``clearwall.control``) that compiles the policy
snapshots it swaps in.
"""
