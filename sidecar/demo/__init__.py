"""The embedded demo: osmem-server, a small corpus, the sidecar on the CPU."""
