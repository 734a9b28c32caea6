"""The shared tool registry and the tools both agents and the API call."""
