"""The control plane: compiles the store's policy into snapshots off the data path.

The data plane (``clearwall.dnsserver``) starts a ``PolicySource`` and loads what it
publishes; nothing here imports the listeners or the handler chain.
"""
