"""clearwall's DNS gateway: a forwarding, caching, policy-enforcing DNS server.

``server`` holds the listeners (the only socket code), ``handlers`` the chain in its
declared order, ``wire`` the hot-path codec, ``workers`` the multi-process runner and
``policy_source`` the control plane that swaps policy snapshots.
"""
