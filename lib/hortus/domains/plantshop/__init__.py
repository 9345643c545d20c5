"""The plant shop: the embedded default domain (contracts, simulator, KPIs)."""
