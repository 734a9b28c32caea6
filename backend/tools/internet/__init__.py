"""Tools that call a service on the internet: web search, Wikipedia, weather, and their HTTP plumbing."""
