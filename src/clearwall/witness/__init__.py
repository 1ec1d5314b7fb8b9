"""The witness server: cosigns logs' checkpoints that extend what it saw (C2SP tlog-witness)."""
