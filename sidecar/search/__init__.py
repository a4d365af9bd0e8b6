"""The pipeline of one intercepted search: query text, widen, documents, page."""
