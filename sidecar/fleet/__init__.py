"""A fleet of sidecars: one config in an OpenSearch index, figures over the shared events
index, a shared score cache on Valkey/Redis."""
