"""HTTP in, HTTP out: routers, wire schemas, error mapping and dependencies."""
