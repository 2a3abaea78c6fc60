"""Platform adapters: how a delivery's payload is prepared and published on each network."""
