"""Document parsing, chunking, embeddings and vector stores for per-user retrieval."""
