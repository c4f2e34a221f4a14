"""Running jobtrail on one machine: loopback servers for the entry points, the local stack."""
